"""`load_for_serving` against real stores: a native checkpoint on S3 (seaweedfs), the same model
registered in an MLflow server and served by `models:/NAME@alias`, and a Hugging Face export."""
import pytest
import torch

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import save_model
from llamaops.platform.model.hf import save_hf
from llamaops.platform.serve.loading import ModelNotFound, load_for_serving
from llamaops.platform.store.uri import staged_output
from llamaops.platform.tracking.registry import register_model

TOKENS = torch.tensor([[1, 5, 9, 200, 7]])


@pytest.fixture(scope="module")
def model() -> Transformer:
    cfg = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden_dim=128, vocab_size=512, max_seq_len=64)
    model = Transformer(cfg)
    model.init_weights(seed=0)
    return model.eval()


def _same_logits(loaded, model) -> bool:
    with torch.no_grad():
        return torch.equal(loaded.model(TOKENS), model(TOKENS))


def test_s3_checkpoint_and_registry_alias_serve_the_same_weights(model, s3_bucket, mlflow_server):
    uri = f"{s3_bucket}/models/tiny"
    with staged_output(uri) as directory:
        save_model(model, directory, overwrite=True)
    direct = load_for_serving(uri)
    assert direct.name == "tiny" and direct.source == uri and _same_logits(direct, model)

    register_model("serve-src", uri, alias="production", tracking_uri=mlflow_server.uri)
    by_alias = load_for_serving("models:/serve-src@production", tracking_uri=mlflow_server.uri)
    assert by_alias.name == "serve-src" and by_alias.source == uri and _same_logits(by_alias, model)
    with pytest.raises(ModelNotFound, match="^model models:/serve-src@nonexistent: registered model 'serve-src' has no alias 'nonexistent'$"):
        load_for_serving("models:/serve-src@nonexistent", tracking_uri=mlflow_server.uri)


def test_a_hugging_face_export_directory_is_served(model, tmp_path):
    save_hf(model, tmp_path / "hf", dtype=torch.float32)
    loaded = load_for_serving(str(tmp_path / "hf"), name="exported")
    assert loaded.name == "exported"
    with torch.no_grad():
        assert torch.allclose(loaded.model(TOKENS), model(TOKENS), atol=1e-5)
