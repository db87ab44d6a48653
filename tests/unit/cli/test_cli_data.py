import json

import numpy as np
from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.platform.store import is_complete

runner = CliRunner()


def write_corpus(folder, documents: int = 40) -> None:
    rng = np.random.default_rng(0)
    vocabulary = [f"word{i}" for i in range(3000)]
    folder.mkdir()
    lines = [json.dumps({"text": " ".join(rng.choice(vocabulary, 150)), "url": f"https://site/{i % (documents - 5)}"})
             for i in range(documents)]  # fmt: skip
    (folder / "web.jsonl").write_text("\n".join(lines + ["{broken json"]) + "\n")
    (folder / "latin1.txt").write_bytes("d\xe9j\xe0 vu".encode("latin-1"))
    (folder / "empty.txt").write_text("  \n")
    (folder / "huge.txt").write_text("intro\n" + "x" * 100_001)  # one line over data.max_line_chars
    (folder / "broken.parquet").write_bytes(b"not parquet")


def test_prep_prints_json_report_with_removals_and_writes_shards(tmp_path):
    write_corpus(tmp_path / "in")
    out = tmp_path / "shards"
    result = runner.invoke(app, ["data", "prep", str(tmp_path / "in"), "--output", str(out), "--json",
                                 "--set", "validation_fraction=0.2", "--set", "data.min_chars=10"])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["documents_in"] == 45 and report["documents_out"] == 35
    assert report["tokens_out"] == sum(split["tokens"] for split in report["splits"].values())
    removed = {step["step"]: {r: c["documents"] for r, c in step["removed"].items()} for step in report["steps"]}
    assert removed["read"] == {"bad_json": 1, "bad_encoding": 1, "unreadable_file": 1}
    assert removed["clean"] == {"empty": 1, "huge_line": 1}
    assert removed["url_dedup"] == {"duplicate_url": 5}
    assert is_complete(out.as_uri()) and json.loads((out / "report.json").read_text()) == report


def test_prep_text_summary_and_one_line_errors(tmp_path):
    write_corpus(tmp_path / "in")
    ok = runner.invoke(app, ["data", "prep", str(tmp_path / "in"), "-o", str(tmp_path / "a"), "-s", "validation_fraction=0.2"])
    assert ok.exit_code == 0 and "45 documents in, 35 out" in ok.stdout and "url_dedup" in ok.stdout
    again = runner.invoke(app, ["data", "prep", str(tmp_path / "in"), "-o", str(tmp_path / "a")])
    assert again.exit_code == 2 and "already exists" in again.output
    bad_set = runner.invoke(app, ["data", "prep", str(tmp_path / "in"), "-o", str(tmp_path / "b"), "-s", "minhash_bands=0"])
    assert bad_set.exit_code == 2 and "minhash_bands" in bad_set.output and not (tmp_path / "b").exists()
    missing = runner.invoke(app, ["data", "prep", str(tmp_path / "nowhere"), "-o", str(tmp_path / "c")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def _tree(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_prep_refuses_a_non_empty_folder_it_did_not_write_and_leaves_every_file(tmp_path):
    write_corpus(tmp_path / "in")
    home = tmp_path / "home"
    (home / "projects").mkdir(parents=True)
    (home / "notes.txt").write_text("mine")
    (home / "projects" / "thesis.tex").write_text("years of work")
    before = _tree(home)
    result = runner.invoke(app, ["data", "prep", str(tmp_path / "in"), "-o", str(home)])
    assert result.exit_code == 2
    assert "non-empty directory that llamaops did not write" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert _tree(home) == before and sorted(p.name for p in tmp_path.iterdir()) == ["home", "in"]


def test_prep_refuses_a_file_as_output_before_any_work_and_leaves_no_temp_folder(tmp_path):
    write_corpus(tmp_path / "in")
    target = tmp_path / "shards.npy"
    target.write_bytes(b"user data")
    result = runner.invoke(app, ["data", "prep", str(tmp_path / "in"), "-o", str(target)])
    assert result.exit_code == 2 and "is a file" in result.output
    assert target.read_bytes() == b"user data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "shards.npy"]


def test_prep_writes_into_an_empty_folder(tmp_path):
    write_corpus(tmp_path / "in")
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["data", "prep", str(tmp_path / "in"), "-o", str(tmp_path / "empty"),
                                 "-s", "validation_fraction=0.2"])
    assert result.exit_code == 0, result.output
    assert is_complete((tmp_path / "empty").as_uri())
