# Helpers the rules share.
from kdaug.provenance import code_hash


def script_code(script):
    """A rule param that changes with the kdaug code the rule's script imports."""
    return code_hash(f"{workflow.basedir}/workflow/scripts/{script}.py")
