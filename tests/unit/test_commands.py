"""Each task's options are declared once (infra/commands.py): the invoke tasks carry exactly
those, and what a task passes on is read back by `python -m infra` (or `python -m bench`) as
the person gave it."""

import argparse

import pytest

import tasks
from infra import commands

NOT_DEFAULTS = {
    bool: lambda option: not option.default,
    int: lambda option: option.default + 7,
    str: lambda option: (
        option.choices[-1] if option.choices else "-k 'a b' -x" if option.default == "" else "x"
    ),
}


def _task(name: str):
    return tasks.namespace.tasks[name]


def test_the_tasks_are_the_table():
    assert set(tasks.namespace.task_names) == set(commands.COMMANDS)
    for name, command in commands.COMMANDS.items():
        arguments = {a.name: a for a in _task(name).get_arguments()}
        assert list(arguments) == list(command.options), name
        for key, option in command.options.items():
            assert arguments[key].help == option.help, (name, key)
            assert arguments[key].positional == option.positional, (name, key)
            if not option.positional:
                assert arguments[key].default == option.default, (name, key)
    assert tasks.namespace.configuration()["dashtam"] == commands.CONFIG


def _parsed(name: str, args: list[str]) -> dict:
    if commands.COMMANDS[name].module == "infra":
        parsed = commands.parser().parse_args(args)
        assert parsed.command == name
    else:
        parser = argparse.ArgumentParser()
        commands.add_arguments(parser, name)
        parsed = parser.parse_args(args)
    return vars(parsed)


@pytest.mark.parametrize("name", list(commands.COMMANDS))
def test_what_a_task_passes_on_is_read_back_as_given(name):
    options = {k: o for k, o in commands.COMMANDS[name].options.items() if not o.confirm_only}
    given = {}
    for key, option in options.items():
        if option.positional:
            given[key] = option.choices[-1] if option.choices else "add accounts"
        elif option.default is None:
            given[key] = (option.kind or str)("12")
        else:
            given[key] = NOT_DEFAULTS[type(option.default)](option)
    defaults = {k: given[k] if o.positional else o.default for k, o in options.items()}
    for values in (given, defaults):
        values = commands.resolved(name, values, commands.CONFIG)
        parsed = _parsed(name, commands.argv(name, values))
        assert {key: parsed[key] for key in options} == values


def test_an_option_with_choices_refuses_any_other_value():
    with pytest.raises(SystemExit):
        commands.parser().parse_args(["demo", "--source", "nope"])
    assert commands.parser().parse_args(["demo", "--source", "ibkr"]).source == "ibkr"


def test_the_configured_defaults_fill_what_was_not_passed():
    passed = {"reload": True, "workers": 0, "timeout": None}
    config = {"reload": False, "up_timeout": 5.0}
    assert commands.resolved("up", passed, config) == {
        "reload": False,
        "workers": 0,
        "timeout": 5.0,
    }
    passed = {"reload": False, "workers": 0, "timeout": 30}
    assert commands.resolved("up", passed, commands.CONFIG)["timeout"] == 30
    assert commands.argv("up", commands.resolved("up", passed, commands.CONFIG)) == [
        "up",
        "--no-reload",
        "--workers=0",
        "--timeout=30",
    ]
