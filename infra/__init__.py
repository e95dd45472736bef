"""Environment machinery behind tasks.py: certificates, env files, the local runtime, workflows.

Run as ``python -m infra <command>`` inside the hatch environment (tasks.py does that). Nothing
under packages/ imports this.
"""
