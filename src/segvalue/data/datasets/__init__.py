"""Reference datasets shipped with segvalue.

``CDNOW_master.txt.gz``: Fader and Hardie's CDNOW transaction log (23,570 customers who
made their first purchase in the first quarter of 1997, followed to June 1998), as
redistributed with the lifetimes 0.11.3 package (MIT). Columns, whitespace-separated, no
header: original customer id, customer id, date (YYYYMMDD), quantity, amount (USD).
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

__all__ = ["CDNOW_AS_OF", "copy_cdnow"]

#: The end of the CDNOW observation period.
CDNOW_AS_OF = "1998-06-30"


def copy_cdnow(dest_dir: Path) -> Path:
    """Copy the CDNOW master file into ``dest_dir`` and return its path.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> copy_cdnow(pathlib.Path(tempfile.mkdtemp())).name
    'CDNOW_master.txt.gz'
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    source = resources.files(__name__) / "CDNOW_master.txt.gz"
    target = dest_dir / "CDNOW_master.txt.gz"
    with resources.as_file(source) as path:
        shutil.copyfile(path, target)
    return target
