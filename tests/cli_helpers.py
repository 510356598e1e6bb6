"""What the command's tests share: running ``tinymuse`` in-process, its one error line, and
reading a PNG it wrote."""
import numpy as np
from PIL import Image

from tinymuse import cli


def run(*argv):
    return cli.main([str(a) for a in argv])


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tinymuse: error: "), err
    return err[0]


def png(path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB"))
