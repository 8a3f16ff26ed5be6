"""Ablation studies as data: a `Study` declares arms and evaluations per preset; the runner executes them.

from lit_codellama.studies import Arm, Preset, Study, run_cli
STUDY = Study("fim_rate", "...", presets={"small": Preset(train={...}, arms={...}, evaluations={...})})
run_cli(STUDY)   # --preset, --seeds, --out, --dry-run
"""

from lit_codellama.studies.cli import run_cli
from lit_codellama.studies.runner import Plan, collect, execute
from lit_codellama.studies.stats import summarize, t_interval
from lit_codellama.studies.study import Arm, Claim, Preset, Run, Study

__all__ = ["Arm", "Claim", "Plan", "Preset", "Run", "Study", "collect", "execute", "run_cli", "summarize", "t_interval"]
