"""The machine a benchmark ran on, as the docs' tables name it: CPU model, cores and the
vector flags that decide its speed (AVX2, FMA, AVX-512, AMX)."""

import re
from pathlib import Path


def cpu_description():
    text = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.M).group(1)
    flags = set(re.search(r"^flags\s*:\s*(.*)$", text, re.M).group(1).split())
    shown = sorted(f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma"))
    return f"{model}; {len(re.findall(r'^processor', text, re.M))} cores; {' '.join(shown)}"
