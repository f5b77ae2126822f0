"""A polkit agent on the terminal for the calls that may ask for a password, as systemctl has.

polkitd asks the authentication agent registered for the caller. A desktop session has one; a
terminal without a desktop (ssh, a text console, ``runuser``) has none, and polkit then says
no. So, before its first call that allows interactive authorization, stunmeshctl run on a
terminal by a user other than root starts ``pkttyagent`` for its own process and waits until
the agent is registered (``--notify-fd`` closes); the agent prompts on the terminal for an
administrator's password. ``--no-ask-password`` starts nothing.

In a login session the agent registers as a fallback, so a desktop's own agent still asks
first (as with systemctl). Outside any session it must not: polkitd uses a fallback agent
only for a subject that has a session, and would find none.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys

PKTTYAGENT = "pkttyagent"
REGISTER_TIMEOUT = 5.0  # s for pkttyagent to register with polkitd (a few ms normally)
STOP_TIMEOUT = 2.0


def in_login_session() -> bool:
    """Whether logind put this process in a session (its cgroup is a session scope), which
    is how polkitd finds a subject's session."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as cgroup:
            return any("/session-" in line and ".scope" in line for line in cgroup)
    except OSError:
        return False


def wanted() -> bool:
    """A terminal to ask on, a caller polkit may ask (root is always allowed), an agent."""
    return sys.stdin.isatty() and os.geteuid() != 0 and shutil.which(PKTTYAGENT) is not None


class TtyAgent:
    """``pkttyagent --process <stunmeshctl's pid>``, started once, stopped with the client."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the agent and wait for its registration; a failure to start or register is
        not an error here: polkit then finds no agent and the call is refused as it would
        have been."""
        if self.proc is not None:
            return
        loop = asyncio.get_running_loop()
        argv = [PKTTYAGENT, "--process", str(os.getpid())]
        if in_login_session():
            argv.append("--fallback")
        registered, notify = os.pipe()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, "--notify-fd", str(notify), pass_fds=(notify,)
            )
        except OSError:
            os.close(registered)
            return
        finally:
            os.close(notify)
        done = loop.create_future()
        # the pipe reads EOF once the agent closed its end: registered, or gone
        loop.add_reader(registered, lambda: done.done() or done.set_result(None))
        try:
            async with asyncio.timeout(REGISTER_TIMEOUT):
                await done
        except TimeoutError:
            pass
        finally:
            loop.remove_reader(registered)
            os.close(registered)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
