"""User errors: a mistake the user can fix (a data file, a checkpoint path, options that do not go
together) ends a script with ONE line on stderr and exit status 2, as argparse does for a bad
option. A bug keeps its traceback. `--debug` (or NANORLHF_DEBUG=1) shows the traceback anyway."""
import os
import sys


class UserError(Exception):
    """A mistake the user can fix. The message is one line: first the file:line or option, then
    what is wrong and what to do ("data/demos.jsonl:17: missing field 'response' ...")."""


def exit_on_user_error(main, argv=None):
    """Run a script's main(argv); a UserError becomes `train_sft.py: error: <message>` on stderr
    and exit status 2. main() itself raises, so tests can call it and catch the UserError.
    Under torchrun the process group is destroyed before the exit either way: gloo's threads
    left alive at interpreter shutdown abort the process ("terminate called without an active
    exception", SIGABRT; pytorch/pytorch#190489)."""
    from nanorlhf.distributed import ddp_teardown

    argv = sys.argv[1:] if argv is None else argv
    try:
        out = main(argv)
    except UserError as e:
        if "--debug" in argv or os.environ.get("NANORLHF_DEBUG") == "1":
            raise
        message = " ".join(str(e).splitlines())  # one line, whatever the message holds
        print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr, flush=True)
        ddp_teardown()
        sys.exit(2)
    ddp_teardown()
    return out
