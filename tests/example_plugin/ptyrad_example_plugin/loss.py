"""An L1 amplitude loss and an iteration counter, registered through the entry-point group."""

import torch
from pydantic import BaseModel, ConfigDict, Field

from ptyrad_core import hookimpl


class L1Amplitude(torch.nn.Module):
    """mean |sqrt(pred) - sqrt(meas)| / mean sqrt(meas)."""

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        eps: float = Field(1e-10, ge=0, description="Added to the prediction before the square root.")

    def __init__(self, options):
        super().__init__()
        self.options = options

    def forward(self, pred, meas, batch):
        m = meas.sqrt()
        return ((pred + self.options.eps).sqrt() - m).abs().mean() / m.mean()


@hookimpl
def ptyrad_register_loss_terms(registry):
    registry.add("example_l1", L1Amplitude)


@hookimpl
def ptyrad_on_run_end(run):
    (run.output_dir / "example_plugin_saw_end.txt").write_text(str(run.iteration))
