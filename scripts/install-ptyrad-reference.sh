#!/usr/bin/env bash
# A copy of ../shared/tools/install-ptyrad-reference.sh, kept in the repository so that a clean
# clone (CI) can make PtyRAD's venv for the tests that compare with PtyRAD's own code.
# Install PtyRAD 1.0.0, the reference implementation, into its own virtual environment
# for side-by-side benchmarks and comparisons. Usage:
#   scripts/install-ptyrad-reference.sh [VENV_DIR]     (default: .venv-ptyrad)
# Then: VENV_DIR/bin/python -c "from ptyrad.solver import PtyRADSolver"
#
# Two repairs are applied inside that environment only, neither touching PtyRAD's numerics:
# 1. ptyrad/plotting/basic.py uses one f-string with nested same-type quotes, which only
#    Python >= 3.12 parses; on Python 3.11 the quotes of that one expression are swapped.
# 2. The CPU build of torch 2.13 is paired with torchvision 0.28.0, whose compiled
#    operators are built for the CUDA build and fail to register; PtyRAD only uses
#    torchvision's pure-torch gaussian_blur, so failed operator registrations are skipped.
set -euo pipefail
VENV=${1:-.venv-ptyrad}
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q torch==2.13.0
"$VENV/bin/pip" install -q torchvision==0.28.0 ptyrad==1.0.0
SP=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
"$VENV/bin/python" - "$SP" <<'PY'
import re, sys, pathlib
sp = pathlib.Path(sys.argv[1])
basic = sp / "ptyrad/plotting/basic.py"
s = basic.read_text()
s = s.replace("{lr_iters['niter'][-1]}", '{lr_iters["niter"][-1]}')
basic.write_text(s)
meta = sp / "torchvision/_meta_registrations.py"
s = meta.read_text()
if "_safe_register_fake" not in s:
    s = s.replace("import torch\n", '''import torch
_orig_register_fake = torch.library.register_fake
def _safe_register_fake(*a, **k):
    def deco(f):
        try:
            return _orig_register_fake(*a, **k)(f)
        except Exception:
            return f
    return deco
''', 1)
    s = s.replace("@torch.library.register_fake(", "@_safe_register_fake(")
    meta.write_text(s)
PY
"$VENV/bin/python" -c "import ptyrad, torch; from ptyrad.solver import PtyRADSolver; print('ptyrad', ptyrad.__version__, 'torch', torch.__version__)"
