"""Progress bars for long work (fits, conversions): tqdm when asked for, a no-op otherwise."""

from __future__ import annotations

from typing import Callable


class ProgressBar:
    """Optional tqdm bar counting INR-steps; a no-op when progress is off."""

    def __init__(self, enabled: bool, frames: int) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(desc=f"fitting {frames} frame(s)", unit="INR-step", leave=False)

    def step(self, stage: str) -> Callable[[int], None] | None:
        """A per-step callback that advances the bar by the INRs still active."""
        if self.bar is None:
            return None
        bar = self.bar

        def on_step(active: int) -> None:
            bar.set_postfix_str(stage, refresh=False)
            bar.update(active)

        return on_step

    def close(self) -> None:
        """Close the bar if any."""
        if self.bar is not None:
            self.bar.close()
