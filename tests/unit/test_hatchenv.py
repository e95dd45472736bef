"""Tasks start the hatch environment's Python directly while nothing hatch installs it from has
changed (infra/hatchenv.py), and go through `hatch run` again when anything has."""

import json
import sys

from infra import hatchenv


def _project(tmp_path):
    (tmp_path / "hatch.toml").write_text('[envs.default]\ndependencies = ["a"]\n')
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "packages" / "one").mkdir(parents=True)
    (tmp_path / "packages" / "one" / "pyproject.toml").write_text("[project]\nname = 'one'\n")
    return tmp_path


def _record(root, env="default", python=sys.executable, changes=None):
    path = root / ".dashtam" / "hatch-envs" / f"{env}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "digest": hatchenv.digest(root, env),
                "python": python,
                "changes": changes or {"VIRTUAL_ENV": ["set", "/envs/x"]},
            }
        )
    )


def test_a_record_that_holds_starts_the_interpreter_with_hatchs_variables(tmp_path, monkeypatch):
    root = _project(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin")
    monkeypatch.setenv("GONE", "1")
    _record(
        root,
        changes={
            "PATH": ["prefix", "/envs/x/bin:"],
            "VIRTUAL_ENV": ["set", "/envs/x"],
            "GONE": ["unset"],
        },
    )
    python, env = hatchenv.direct(root, "default")
    assert python == sys.executable
    assert (env["PATH"], env["VIRTUAL_ENV"], "GONE" in env) == (
        "/envs/x/bin:/usr/bin",
        "/envs/x",
        False,
    )
    assert hatchenv.direct(root, "test") is None  # another environment: its own record


def test_any_change_to_what_hatch_installs_from_goes_through_hatch_again(tmp_path):
    root = _project(tmp_path)
    for changed in ("hatch.toml", "pyproject.toml", "packages/one/pyproject.toml"):
        _record(root)
        assert hatchenv.direct(root, "default") is not None
        (root / changed).write_text((root / changed).read_text() + "# changed\n")
        assert hatchenv.direct(root, "default") is None, changed
    _record(root)
    (root / "packages" / "two").mkdir()
    (root / "packages" / "two" / "pyproject.toml").write_text("[project]\nname = 'two'\n")
    assert hatchenv.direct(root, "default") is None  # a new package


def test_a_removed_environment_or_a_broken_record_goes_through_hatch(tmp_path):
    root = _project(tmp_path)
    _record(root, python=str(tmp_path / "gone" / "python"))
    assert hatchenv.direct(root, "default") is None
    (root / ".dashtam" / "hatch-envs" / "default.json").write_text("{not json")
    assert hatchenv.direct(root, "default") is None


def test_changes_are_what_hatch_did_to_the_environment():
    before = {"PATH": "/usr/bin", "HOME": "/root", "VIRTUAL_ENV": "/outer", "DROPPED": "x"}
    after = {"PATH": "/env/bin:/usr/bin", "HOME": "/root", "VIRTUAL_ENV": "/env", "NEW": "1"}
    found = hatchenv.changes(before, after)
    assert found == {
        "PATH": ["prefix", "/env/bin:"],
        "VIRTUAL_ENV": ["set", "/env"],
        "NEW": ["set", "1"],
        "DROPPED": ["unset"],
    }
    assert hatchenv.applied(before, found) == after
