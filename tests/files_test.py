import os
import stat

import pytest

from tf_gradual_prune import files


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Sets the umask for one test and restores it."""
    saved = os.umask(0o022)
    yield lambda value: os.umask(value)
    os.umask(saved)


@pytest.mark.parametrize("value, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
@pytest.mark.parametrize("content", ["text", b"bytes"])
def test_write_atomic_gives_a_new_file_the_umask_permissions(tmp_path, umask, value, expected,
                                                             content):
    umask(value)
    path = tmp_path / "out.json"
    files.write_atomic(str(path), content)
    assert mode(path) == expected
    assert path.read_bytes() == (content if isinstance(content, bytes) else content.encode())
    assert sorted(os.listdir(tmp_path)) == ["out.json"]  # no temporary file left


def test_write_atomic_keeps_the_permissions_of_the_file_it_replaces(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "out.txt"
    path.write_text("old")
    os.chmod(path, 0o640)
    files.write_atomic(str(path), "new")
    assert path.read_text() == "new" and mode(path) == 0o640


def test_write_atomic_failure_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        files.write_atomic(str(tmp_path / "out.txt"), 3)
    assert os.listdir(tmp_path) == []


def test_save_figure_gives_the_umask_permissions(tmp_path, umask):
    plt = pytest.importorskip("matplotlib.pyplot")
    umask(0o027)
    figure = plt.figure()
    path = files.save_figure(figure, str(tmp_path / "plot.png"))
    assert mode(path) == 0o640
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["plot.png"]
