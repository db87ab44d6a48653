"""After evaluation: register the model version, promote it when the gate passed, deploy it or say how to serve it."""
from .registration import DeployError, Registration, load_eval_report, model_name_for, run_register
from .rollout import apply_deployment, deployment_manifest, deployment_name, wait_until_ready
from .serving import registry_uri, serve_command

__all__ = ["DeployError", "Registration", "apply_deployment", "deployment_manifest", "deployment_name",
           "load_eval_report", "model_name_for", "registry_uri", "run_register", "serve_command", "wait_until_ready"]
