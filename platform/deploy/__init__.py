"""After evaluation: register the model version, promote it when the gate passed, say how to serve it."""
from .registration import DeployError, Registration, load_eval_report, model_name_for, run_register
from .serving import serve_command

__all__ = ["DeployError", "Registration", "load_eval_report", "model_name_for", "run_register", "serve_command"]
