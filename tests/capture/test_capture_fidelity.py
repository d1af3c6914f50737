"""The script runs as `python SCRIPT ARGS` would: argv, cwd, __main__, sys.path, stdio, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from capture_helpers import fresh_env, write

SHOW = """\
import json, os, re, sys
import helper  # a module beside the script

with open(os.path.join(os.path.dirname(__file__), "data.txt")) as fh:
    beside = fh.read().strip()
with open("relative.txt") as fh:  # relative to the working directory
    relative = fh.read().strip()
print("SHOW " + json.dumps({
    "argv": sys.argv,
    "cwd": os.getcwd(),
    "name": __name__,
    "file": __file__,
    "spec": re.sub(r"0x[0-9a-f]+", "", repr(__spec__)),
    "package": __package__,
    "main_file": sys.modules["__main__"].__file__,
    "path": sys.path,
    "helper": helper.VALUE,
    "beside": beside,
    "relative": relative,
    "pythonpath": os.environ.get("PYTHONPATH"),
    "env": sorted(k for k in os.environ if k.startswith("PERFTUNE")),
}))
"""


def _show(stdout: str) -> dict[str, object]:
    line = next(line for line in stdout.splitlines() if line.startswith("SHOW "))
    data: dict[str, object] = json.loads(line[5:])
    return data


def _project(tmp_path: Path) -> tuple[Path, Path]:
    proj, work = tmp_path / "proj", tmp_path / "work"
    write(proj / "show.py", SHOW)
    write(proj / "helper.py", "VALUE = 'imported from beside the script'\n")
    write(proj / "data.txt", "read from beside the script\n")
    write(work / "relative.txt", "read relative to the cwd\n")
    return proj, work


def _plain(
    args: list[str], cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=fresh_env(),  # the suite's launch plumbing (PERFTUNE_ZYGOTE) never reaches a script
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_script_sees_what_python_would_give_it(tmp_path: Path, profile) -> None:
    _, work = _project(tmp_path)
    args = ["../proj/show.py", "a", "--skip", "9", "with space"]

    plain = _plain(args, work)
    # perftune's own --skip comes before the script; the script's --skip is the script's.
    done = profile("--skip", "2", *args, cwd=work)

    assert plain.returncode == 0, plain.stderr
    expected, seen = _show(plain.stdout), _show(done.stdout)
    assert seen == expected
    assert seen["argv"] == ["../proj/show.py", "a", "--skip", "9", "with space"]
    assert seen["name"] == "__main__"
    assert seen["cwd"] == str(work)
    assert seen["path"][0] == str(tmp_path / "proj")
    assert seen["env"] == []  # nothing of perftune's leaks into the script's environment
    assert done.steps["skip"] == 2
    assert done.meta["argv"] == args and done.meta["cwd"] == str(work)


def test_module_runs_as_python_dash_m(tmp_path: Path, profile) -> None:
    root = tmp_path / "root"
    write(root / "pkg" / "__init__.py", "")
    write(root / "pkg" / "helper.py", "VALUE = 'package helper'\n")
    write(root / "pkg" / "show.py", SHOW.replace("import helper", "from pkg import helper"))
    write(root / "pkg" / "data.txt", "read from beside the module\n")
    write(root / "relative.txt", "read relative to the cwd\n")

    plain = _plain(["-m", "pkg.show", "x", "-m", "y"], root)
    done = profile("-m", "pkg.show", "x", "-m", "y", cwd=root)

    assert plain.returncode == 0, plain.stderr
    expected, seen = _show(plain.stdout), _show(done.stdout)
    assert seen == expected
    assert seen["argv"] == [str(root / "pkg" / "show.py"), "x", "-m", "y"]
    assert seen["path"][0] == str(root)
    assert done.meta["module"] == "pkg.show"


def test_missing_module_fails_like_python(tmp_path: Path, profile) -> None:
    done = profile("-m", "no_such_module_here")

    assert done.returncode == 3
    assert "No module named no_such_module_here" in done.stderr
    assert done.steps["status"] == "crashed"
    assert done.steps["exit_code"] == 1


def test_stdin_and_stdout_pass_through(tmp_path: Path, profile) -> None:
    script = write(
        tmp_path / "echo.py",
        """\
        import sys
        line = sys.stdin.readline()
        print("GOT " + line.strip().upper())
        print("ERR LINE", file=sys.stderr)
    """,
    )

    done = profile(str(script), stdin="hello capture\n")

    assert "GOT HELLO CAPTURE" in done.stdout
    assert "ERR LINE" in done.stderr


def test_script_exit_code_is_kept(tmp_path: Path, profile) -> None:
    script = write(
        tmp_path / "exits.py",
        """\
        import sys
        print("before exit")
        sys.exit(7)
    """,
    )

    done = profile(str(script))

    assert done.returncode == 3  # the script failed
    assert "before exit" in done.stdout
    assert done.steps["status"] == "crashed"
    assert done.steps["exit_code"] == 7
    assert "exited with code 7" in done.steps["error"]


def test_exit_with_a_message_prints_it_like_python(tmp_path: Path, profile) -> None:
    script = write(tmp_path / "exits.py", "import sys\nsys.exit('fatal: no data found')\n")

    done = profile(str(script))

    assert "fatal: no data found" in done.stderr
    assert done.steps["exit_code"] == 1


def test_no_such_script_is_a_usage_error(tmp_path: Path, profile) -> None:
    done = profile(str(tmp_path / "missing.py"))

    assert done.returncode == 2
    assert "no such script" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_script_at_all_is_a_usage_error(tmp_path: Path, profile) -> None:
    done = profile()

    assert done.returncode == 2
    assert "give the script" in done.stderr
