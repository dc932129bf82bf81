"""What makes an output auditable: the stage runner, manifests, run records, tracking (the only MLflow code),
the guard on user commands' outputs and the code deps each stage is digested by."""
