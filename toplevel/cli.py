"""The ``herofossil`` command line.

Every error is one line on stderr and a non-zero exit code (see ``EXIT_CODES``
in ``--help``); a traceback appears only for bugs.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import shutil
import sys
import time

import herofossil
from herofossil import errors
from herofossil.progress import Progress
from herofossil.store.blobs import LARGE

EPILOG = """\
The store is STORE (-R), else $HEROFOSSIL_REPO, else the embedded default
store in $XDG_DATA_HOME/herofossil/default (~/.local/share/...), created on
first use. Versions (REF) are a check-in id or unique prefix (4+ hex digits),
a branch (after 'import git', Git's name of its default branch, e.g. 'main',
names trunk), a tag, 'tip', a date 'YYYY-MM-DD[ HH:MM[:SS]]' (UTC) or
'BRANCH@DATE'. Paths are UTF-8, at most 400 bytes.

exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 conflict, 5 integrity,
6 bad delta, 7 parse error, 8 auth, 9 bad path, 10 store unusable, 11 sync failed,
130 interrupted.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        where = self.prog.removeprefix("herofossil").strip() or "usage"
        raise errors.UsageError(f"{where}: {message} (see --help)")


def _repo(args, create: bool = False, readonly: bool = False):
    """The store of ``-R`` (or the default one); ``readonly`` for commands that only read:
    they wait for no writer and work on a store the user may only read."""
    from herofossil.repo import Repo

    if args.repository is None:
        return Repo.open(None, readonly=readonly)
    return Repo.open(args.repository, create=create, readonly=readonly)


def _progress(args) -> Progress:
    return Progress(enabled=False if args.quiet else None)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _report(ci, what: str) -> None:
    if ci is None:
        _out(f"{what}: unchanged, no check-in made")
    else:
        _out(f"{what}: check-in {ci.id[:12]} on {ci.branch}")


# ---- commands
def cmd_init(args):
    from herofossil.store.lmdbenv import is_store
    from herofossil.store.repo import Repo, default_store_path

    path = os.path.abspath(args.repository or default_store_path())
    if is_store(path):
        raise errors.UsageError(f"a store already exists at {path}")
    with Repo.init(path):
        pass
    _out(f"created store {path}")


def cmd_put(args):
    # A stream: a large file is stored part by part as it is read (bounded memory).
    if args.file in (None, "-"):
        source = contextlib.nullcontext(sys.stdin.buffer)
    else:
        try:
            source = open(args.file, "rb")  # noqa: SIM115 (closed by the with below)
        except OSError as exc:
            raise errors.NotFoundError(f"cannot read {args.file}: {exc.strerror}") from exc
    perm = "x" if args.executable else None
    with source as stream, _repo(args) as repo:
        ci = repo.write(args.path, stream, expect=args.expect, perm=perm,
                        message=args.message, branch=args.branch, user=args.user)
    _report(ci, args.path)


def cmd_cat(args):
    with _repo(args, readonly=True) as repo:
        entry = repo.stat(args.path, at=args.at)
        if entry.is_dir or entry.size < LARGE:
            sys.stdout.buffer.write(repo.read(args.path, at=args.at))
        else:  # a large file part by part, in bounded memory
            with repo.plumbing.open_artifact(entry.id) as stream:
                shutil.copyfileobj(stream, sys.stdout.buffer, 1 << 20)
    sys.stdout.flush()


def cmd_ls(args):
    with _repo(args, readonly=True) as repo:
        entries = repo.walk(args.dir or "", at=args.at) if args.recursive else repo.ls(
            args.dir or "", at=args.at)
    for e in entries:
        name = e.path if args.recursive else e.name
        if e.is_dir:
            name += "/"
        if args.long:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.mtime))
            ident = (e.id or "")[:12].ljust(12)
            kind = "d" if e.is_dir else {"x": "x", "l": "l"}.get(e.perm, "-")
            _out(f"{kind} {ident} {e.size:>10} {stamp} {name}")
        else:
            _out(name)


def cmd_rm(args):
    with _repo(args) as repo:
        ci = repo.delete(args.path, expect=args.expect, recursive=args.recursive,
                         message=args.message, branch=args.branch, user=args.user)
    _report(ci, f"removed {args.path}")


def cmd_mv(args):
    with _repo(args) as repo:
        ci = repo.rename(args.src, args.dst, overwrite=args.force, message=args.message,
                         branch=args.branch, user=args.user)
    _report(ci, f"moved {args.src} to {args.dst}")


def cmd_mkdir(args):
    with _repo(args) as repo:
        ci = repo.mkdir(args.path, message=args.message, branch=args.branch, user=args.user)
    _report(ci, f"folder {args.path}")


def cmd_commit(args):
    with _repo(args) as repo:
        ci = repo.commit_dir(args.dir, message=args.message, branch=args.branch, user=args.user)
    _report(ci, args.dir)


def cmd_checkout(args):
    with _repo(args, readonly=True) as repo:
        n = repo.checkout(args.ref, args.dir, force=args.force)
    _out(f"wrote {n} files to {args.dir}")


def cmd_log(args):
    with _repo(args, readonly=True) as repo:
        entries = repo.log(args.path, at=args.at, limit=args.n)
    for c in entries:
        branch = c.branch or "? (its parent has not arrived)"
        if args.oneline:
            _out(f"{c.id[:12]} {c.date[:19].replace('T', ' ')} [{branch}] {c.comment}")
            continue
        _out(f"check-in {c.id}")
        if len(c.parents) > 1:
            _out("merge:   " + " ".join(p[:12] for p in c.parents))
        _out(f"date:    {c.date.replace('T', ' ')} UTC")
        _out(f"user:    {c.user}")
        _out(f"branch:  {branch}" + (f"  tags: {', '.join(c.tags)}" if c.tags else ""))
        _out()
        for line in c.comment.splitlines() or [""]:
            _out("    " + line)
        _out()


def cmd_diff(args):
    with _repo(args, readonly=True) as repo:
        changes = repo.diff(args.ref1, args.ref2, args.path)
        for ch in changes:
            if args.stat:
                _out(f"{ch.status} {ch.path}")
                continue
            old = repo.artifact(ch.old) if ch.old else b""
            new = repo.artifact(ch.new) if ch.new else b""
            if b"\0" in old[:8192] or b"\0" in new[:8192]:
                _out(f"Binary files a/{ch.path} and b/{ch.path} differ")
                continue
            lines = difflib.unified_diff(
                old.decode("utf-8", "replace").splitlines(keepends=True),
                new.decode("utf-8", "replace").splitlines(keepends=True),
                fromfile="/dev/null" if ch.old is None else f"a/{ch.path}",
                tofile="/dev/null" if ch.new is None else f"b/{ch.path}",
            )
            for line in lines:
                sys.stdout.write(line if line.endswith("\n") else line + "\n\\ No newline\n")


def cmd_branch(args):
    with _repo(args) as repo:
        if args.action in (None, "list"):
            tips = repo.branches()
            git_names = {b: a for a, b in repo.branch_aliases().items()}
            for name in sorted(tips):
                leaves = repo.leaves(name)
                mark = "*" if name == repo.default_branch else " "
                fork = f"  ({len(leaves)} leaves: merge to join)" if len(leaves) > 1 else ""
                label = f"{name} (git: {git_names[name]})" if name in git_names else name
                _out(f"{mark} {label:<20} {tips[name][:12]}{fork}")
        elif args.action == "new":
            if not args.name:
                raise errors.UsageError("branch new: name the branch")
            ci = repo.branch_new(args.name, args.at, user=args.user)
            _out(f"branch {args.name}: check-in {ci.id[:12]}")
        elif args.action == "leaves":
            for cid in repo.leaves(args.name):
                _out(cid)


def cmd_tag(args):
    with _repo(args) as repo:
        if args.action in (None, "list"):
            for name, ids in sorted(repo.tags().items()):
                _out(f"{name:<20} {', '.join(i[:12] for i in ids)}")
        elif args.action == "add":
            if not args.name:
                raise errors.UsageError("tag add: name the tag")
            repo.tag_add(args.name, args.ref, user=args.user)
            _out(f"tagged {repo.resolve(args.ref)[:12]} {args.name}")
        elif args.action == "rm":
            if not args.name:
                raise errors.UsageError("tag rm: name the tag")
            repo.tag_remove(args.name, args.ref, user=args.user)
            _out(f"removed tag {args.name}")


def cmd_merge(args):
    with _repo(args) as repo:
        ci = repo.merge(args.ref, branch=args.branch, strategy=args.strategy,
                        message=args.message, user=args.user)
    _out(f"merged: check-in {ci.id[:12]} on {ci.branch}")


def cmd_verify(args):
    # The store is not opened here: opening a damaged data file can crash liblmdb,
    # and verify's checker (a child process) is the one that may crash.
    from herofossil.store.repo import default_store_path
    from herofossil.store.verify import verify

    progress = _progress(args)
    report = verify(args.repository or default_store_path(), progress)
    progress.close()
    if len(report.problems) == 1:
        raise errors.IntegrityError(f"verify found a problem: {report.problems[0]}")
    for p in report.problems:
        sys.stderr.write(f"herofossil: {p}\n")
    if not report.ok:
        raise errors.IntegrityError(f"verify found {len(report.problems)} problems: the store "
                                    "is damaged (see above)")
    _out(f"ok: {report.artifacts} artifacts, {report.checkins} check-ins verified"
         + (f", {report.phantoms} phantoms" if report.phantoms else "")
         + (f", {report.loose_parts} loose parts of cut or refused uploads (compact drops "
            "them)" if report.loose_parts else ""))


def cmd_rebuild(args):
    progress = _progress(args)
    with _repo(args) as repo:
        result = repo.rebuild(progress)
    progress.close()
    _out(f"rebuilt: {result['artifacts']} artifacts, {result['checkins']} check-ins, "
         f"{result['branches']} branches")


def cmd_compact(args):
    progress = _progress(args)
    with _repo(args) as repo:
        try:
            before, after = repo.compact(progress=progress)
        finally:
            progress.close()
    _out(f"compacted: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB on disk")


def cmd_stats(args):
    from herofossil.store import exchange
    from herofossil.sync.backend import SyncBackend

    with _repo(args, readonly=True) as repo:
        s = repo.stats()
        backend = SyncBackend(repo)
        if backend.identity()["store"] == exchange.STAND_IN:  # no ids yet: none to show
            s["fossil_project"] = s["fossil_server"] = "none yet (the first serve or sync)"
        else:
            s["fossil_project"], s["fossil_server"] = backend.fossil_codes()
        tables = repo.table_sizes() if args.tables else None
    if args.json:
        _out(json.dumps(dict(s, tables=tables) if tables else s, indent=2))
        return
    for key, value in s.items():
        _out(f"{key.replace('_', ' '):<14} {value}")
    if tables:
        _out(f"\n{'table':<10} {'entries':>9} {'bytes':>12}")
        for name, t in sorted(tables.items(), key=lambda kv: -kv[1]["bytes"]):
            _out(f"{name:<10} {t['entries']:>9} {t['bytes']:>12}")


def cmd_export(args):
    progress = _progress(args)
    if args.kind == "git":
        with _repo(args) as repo:
            return _export_git(repo, args.dir, progress)
    with _repo(args) as repo:
        n = repo.export_artifacts(args.dir, progress)
    progress.close()
    _out(f"exported {n} artifacts to {args.dir}")


def cmd_import(args):
    progress = _progress(args)
    if args.kind == "git":
        with _repo(args, create=True) as repo:
            return _import_git(repo, args.dir, args.incremental, progress)
    with _repo(args, create=True) as repo:
        n = repo.import_artifacts(args.dir, progress)
        progress.close()
        _give_back_free_pages(repo)
    _out(f"imported {n} new artifacts from {args.dir}")


def _give_back_free_pages(repo) -> None:
    """After a bulk import or clone: LMDB leaves free pages behind (a clone of the real
    history from Fossil: 5.0 MB on disk, 3.7 MB compacted); give them back. History is
    not packed here (``compact`` does it: 0.99 s on the real history, whose import takes
    0.6-0.9 s; ``python -m bench --only size``)."""
    try:
        repo.compact(pack=False)
    except errors.StoreError:
        pass  # another process has the store open: its free pages get reused later


def _export_git(repo, path: str, progress) -> None:
    """``export git GITDIR``: the history as a Git repository."""
    from herofossil.gitimport.exporter import export_git

    r = export_git(repo, path, progress=progress)
    progress.close()
    _out(f"exported {r.commits} commits ({r.new_commits} new) and {r.refs} refs to {path} "
         f"in {r.seconds:.2f}s")


def _import_git(repo, path: str, incremental: bool, progress) -> None:
    """``import git GITDIR [--incremental]``: every branch and tag of a Git repository."""
    from herofossil.gitimport.importer import import_git

    r = import_git(repo, path, incremental=incremental, progress=progress)
    progress.close()
    _give_back_free_pages(repo)
    for w in r.warnings:
        sys.stderr.write(f"herofossil: warning: {w}\n")
    _out(f"imported {r.commits} commits ({r.skipped} already present), {r.refs_changed} refs "
         f"changed from {path} in {r.seconds:.2f}s (peak RSS {r.peak_rss_kb // 1024} MiB)")


def cmd_git(args):
    """``git map [REF] [-n N]``: Git commit id and check-in id, newest first."""
    from herofossil.gitimport.mapping import git_map

    with _repo(args) as repo:
        for sha, cid in git_map(repo, args.ref, args.n):
            _out(f"{sha or '-' * 40} {cid}")


_PS_WARNING = ("herofossil: warning: {what} puts a password on the command line, where "
               "every local user sees it (ps); save users with 'serve --add-user NAME' "
               "instead, which asks for the password (or reads it from stdin)\n")


def _read_password(name: str) -> str:
    """A new user's password: asked twice on a terminal, else one line of stdin."""
    import getpass

    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass(f"password for {name} (again): ") != password:
            raise errors.UsageError(f"serve --add-user {name}: the passwords differ")
    else:
        line = sys.stdin.readline()
        if not line:
            raise errors.UsageError(f"serve --add-user {name}: no password on stdin "
                                    "(one line per user)")
        password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise errors.UsageError(f"serve --add-user {name}: the password is empty")
    return password


def cmd_serve(args):
    from herofossil.webdav import auth, server
    from herofossil.webdav.noise import DEFAULT_PATTERNS

    with _repo(args) as repo:
        if args.add_user or args.remove_user or args.list_users:
            for spec in args.add_user or []:
                name, password, rw = auth.parse_new_user(spec)
                if password is None:
                    password = _read_password(name)
                else:
                    sys.stderr.write(_PS_WARNING.format(what="--add-user NAME:PASSWORD"))
                auth.store_user(repo, name, password, rw)
                if args.fossil:
                    from herofossil.sync import fossilusers

                    fossilusers.grant(repo, name, password, rw)
                _out(f"user {name}: saved ({'rw' if rw else 'ro'}"
                     f"{', with Fossil login' if args.fossil else ''})")
            for name in args.remove_user or []:
                from herofossil.sync import fossilusers

                fossil = fossilusers.revoke(repo, name)
                if not auth.remove_user(repo, name) and not fossil:
                    raise errors.NotFoundError(f"no saved user {name!r}")
                _out(f"user {name}: removed")
            if args.list_users:
                for name, access in auth.list_users(repo):
                    _out(f"{name} {access}")
            return
        users = auth.UserDB()
        users.load(repo)
        for spec in args.users or []:
            users.add(*auth.parse_user_spec(spec))
        if args.users:
            sys.stderr.write(_PS_WARNING.format(what="--user"))
        if args.no_webdav and args.no_sync:
            raise errors.UsageError("serve: --no-webdav and --no-sync leave nothing to serve")
        if not args.no_webdav or not args.public_read:
            server.check_exposure(args.host, users)
        srv = None
        if not args.no_webdav:
            app = server.make_app(repo, users=users, readonly=args.readonly,
                                  noise_patterns=DEFAULT_PATTERNS + tuple(args.noise or ()))
            try:
                srv = server.make_server(app, args.host, args.webdav_port)
            except OSError as exc:
                raise errors.UsageError(f"serve: cannot listen on {args.host}:"
                                        f"{args.webdav_port}: {exc.strerror or exc}") from exc
        sync_srv = None
        if not args.no_sync:
            from herofossil.sync import peers as sync_peers
            from herofossil.sync.server import Background

            follow = [sync_peers.resolve(repo, peer)[1] for peer in args.follow or []]
            port = args.sync_port
            if port is None:  # beside WebDAV's: the next port, or any free one with it
                port = 0 if args.webdav_port == 0 else args.webdav_port + 1
            try:
                sync_srv = Background(repo, args.host, port, readonly=args.readonly,
                                      users=users, public_read=args.public_read,
                                      follow=follow)
            except OSError as exc:
                raise errors.UsageError(f"serve: cannot listen on {args.host}:"
                                        f"{args.sync_port}: {exc.strerror or exc}") from exc
        def announce(line: str) -> None:
            _announce(line)
            if sync_srv is not None:
                _announce(f"sync: {sync_srv.url}")

        try:
            if srv is None:  # sync only: no webdav line to follow
                _announce(f"sync: {sync_srv.url}")
            server.serve_forever(srv, announce)
        finally:
            if sync_srv is not None:
                sync_srv.stop()


def cmd_clone(args):
    from herofossil.sync import client

    dest = args.store or args.repository
    if dest is None:
        raise errors.UsageError("clone: name the new store (clone URL STORE, or -R STORE)")
    repo, report = client.clone(args.url, dest, progress=_progress(args))
    with repo:
        _give_back_free_pages(repo)
        _out(f"cloned {client.redact(args.url)} into {repo.path}: {report.summary()}")


def _sync_cmd(args, pull: bool, push: bool) -> None:
    from herofossil.sync import peers

    failed = 0
    with _repo(args) as repo:
        if not args.peer and not peers.list_peers(repo):
            raise errors.UsageError("no peer given and none saved: give a URL, or save one "
                                    "with 'herofossil peer add NAME URL'")
        for label, result in peers.sync_each(repo, [args.peer] if args.peer else None,
                                             pull=pull, push=push, progress=_progress(args)):
            if isinstance(result, errors.SyncError):
                if args.peer:  # the one peer asked for: its error is the command's
                    raise result
                failed += 1
                said = str(result)
                said = said if said.startswith(label) else f"{label}: {said}"
                sys.stderr.write(f"herofossil: {said}\n")
            else:
                _out(f"{label}: {result.summary()}")
                forks = [b for b in repo.branches() if len(repo.leaves(b)) > 1]
                for branch in forks:
                    _out(f"{label}: branch {branch} has {len(repo.leaves(branch))} leaves "
                         "(written on both sides): 'herofossil merge' joins them")
    if failed:
        raise errors.SyncError(f"{failed} peer(s) failed (see above)")


def cmd_pull(args):
    _sync_cmd(args, pull=True, push=False)


def cmd_push(args):
    _sync_cmd(args, pull=False, push=True)


def cmd_sync(args):
    _sync_cmd(args, pull=True, push=True)


def cmd_peer(args):
    from herofossil.sync import peers

    with _repo(args) as repo:
        if args.action == "add":
            if not args.name or not args.url:
                raise errors.UsageError("peer add NAME URL")
            peer = peers.add(repo, args.name, args.url)
            _out(f"peer {peer.name}: {peer.url}")
        elif args.action == "rm":
            if not args.name:
                raise errors.UsageError("peer rm NAME")
            peers.remove(repo, args.name)
            _out(f"peer {args.name}: removed")
        else:
            import datetime as dt

            for p in peers.list_peers(repo):
                when = (dt.datetime.fromtimestamp(p.last_sync).strftime("%Y-%m-%d %H:%M:%S")
                        if p.last_sync else "never synced")
                note = f"  last error: {p.last_error}" if p.last_error else ""
                _out(f"{p.name}  {p.url}  {when}{note}")


def _announce(line: str) -> None:
    _out(line)
    sys.stdout.flush()


def cmd_check(args):
    with _repo(args, readonly=True) as repo:
        checked, problems = repo.check(args.ref)
    for p in problems:
        _out(str(p))
    if problems:
        raise errors.ParseError(f"{len(problems)} error(s) in {checked} structured files")
    _out(f"ok: {checked} structured files parse")


# ---- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command (each sets ``fn``, the function that runs it)."""
    p = _Parser(prog="herofossil", description="A versioned, content-addressed datastore "
                "with Fossil-format history.", epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-R", "--repository", metavar="STORE", help="the store directory")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("--version", action="version", version=f"herofossil {herofossil.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def cmd(name, fn, help_text, writes=False):
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(fn=fn)
        sp.add_argument("--user", help="user recorded on check-ins (default: $HEROFOSSIL_USER "
                        "or the login name)")
        if writes:
            sp.add_argument("-m", "--message", help="check-in comment")
            sp.add_argument("--branch", help="branch to write on (default trunk; a new name "
                            "starts the branch from trunk's tip)")
        return sp

    _file_commands(cmd)
    _history_commands(cmd)
    _maintenance_commands(cmd)
    _interop_commands(cmd)
    _sync_commands(cmd)
    _serve_command(sub)
    return p


def _sync_commands(cmd) -> None:
    """clone, pull, push, sync and peer."""
    sp = cmd("clone", cmd_clone, "clone URL [STORE]: copy the store a herofossil server "
             "serves (run it again after an interruption: it resumes)")
    sp.add_argument("url")
    sp.add_argument("store", nargs="?")
    for name, fn, what in (("pull", cmd_pull, "get what PEER has that this store lacks"),
                           ("push", cmd_push, "send PEER what this store has that it lacks"),
                           ("sync", cmd_sync, "pull and push in one exchange")):
        sp = cmd(name, fn, f"{name} [PEER]: {what}; PEER is a saved name or a URL "
                 "(credentials: in the URL, ~/.netrc or $HEROFOSSIL_SYNC_PASSWORD); no PEER: "
                 "every saved peer in turn, a failing one reported without stopping the others")
        sp.add_argument("peer", nargs="?")
    sp = cmd("peer", cmd_peer, "peer add NAME URL / peer ls / peer rm NAME: saved peers "
             "(kept in the store, never with a password)")
    sp.add_argument("action", choices=["add", "ls", "rm"])
    sp.add_argument("name", nargs="?")
    sp.add_argument("url", nargs="?")


def _file_commands(cmd) -> None:
    """init, one-file operations, commit DIR and checkout."""
    cmd("init", cmd_init, "create a store at STORE (or the default location)")
    sp = cmd("put", cmd_put, "write FILE (or stdin) at PATH as one check-in", writes=True)
    sp.add_argument("path")
    sp.add_argument("file", nargs="?", help="local file to read; '-' or none reads stdin")
    sp.add_argument("--expect", metavar="ID", help="fail with a conflict unless PATH is at "
                    "artifact ID ('' = must not exist)")
    sp.add_argument("-x", "--executable", action="store_true", help="mark the file executable")
    sp = cmd("cat", cmd_cat, "print the file at PATH")
    sp.add_argument("path")
    sp.add_argument("--at", metavar="REF", help="version to read (default: trunk's tip)")
    sp = cmd("ls", cmd_ls, "list a folder")
    sp.add_argument("dir", nargs="?")
    sp.add_argument("--at", metavar="REF")
    sp.add_argument("-l", "--long", action="store_true", help="kind, id, size and date")
    sp.add_argument("-r", "--recursive", action="store_true", help="every file below DIR")
    sp = cmd("rm", cmd_rm, "delete PATH as one check-in", writes=True)
    sp.add_argument("path")
    sp.add_argument("-r", "--recursive", action="store_true", help="delete a folder")
    sp.add_argument("--expect", metavar="ID")
    sp = cmd("mv", cmd_mv, "move or rename a file or folder as one check-in", writes=True)
    sp.add_argument("src")
    sp.add_argument("dst")
    sp.add_argument("-f", "--force", action="store_true", help="replace an existing DST file")
    sp = cmd("mkdir", cmd_mkdir, "create an empty folder (kept in history)", writes=True)
    sp.add_argument("path")
    sp = cmd("commit", cmd_commit, "make the tip equal to directory DIR, as one check-in",
             writes=True)
    sp.add_argument("dir")
    sp = cmd("checkout", cmd_checkout, "write version REF into directory DIR")
    sp.add_argument("ref")
    sp.add_argument("dir")
    sp.add_argument("-f", "--force", action="store_true", help="write into a non-empty DIR")


def _history_commands(cmd) -> None:
    """log, diff, branch, tag and merge."""
    sp = cmd("log", cmd_log, "history, newest first")
    sp.add_argument("path", nargs="?", help="only check-ins that changed this file or folder")
    sp.add_argument("-n", type=int, metavar="N", help="at most N entries")
    sp.add_argument("--at", metavar="REF", help="start from this version")
    sp.add_argument("--oneline", action="store_true")
    sp = cmd("diff", cmd_diff, "differences between two versions (REF2 default: trunk's tip)")
    sp.add_argument("ref1")
    sp.add_argument("ref2", nargs="?")
    sp.add_argument("path", nargs="?")
    sp.add_argument("--stat", action="store_true", help="only list changed paths")
    sp = cmd("branch", cmd_branch, "list branches, start one ('new NAME [--at REF]'), "
             "or list a branch's leaves")
    sp.add_argument("action", nargs="?", choices=["list", "new", "leaves"])
    sp.add_argument("name", nargs="?")
    sp.add_argument("--at", metavar="REF", help="where a new branch starts")
    sp = cmd("tag", cmd_tag, "list tags, or 'add NAME [REF]' / 'rm NAME [REF]'")
    sp.add_argument("action", nargs="?", choices=["list", "add", "rm"])
    sp.add_argument("name", nargs="?")
    sp.add_argument("ref", nargs="?")
    sp = cmd("merge", cmd_merge, "join REF (default: the other leaf of a forked branch) into "
             "the branch tip", writes=True)
    sp.add_argument("ref", nargs="?")
    sp.add_argument("--strategy", choices=["ours", "theirs"],
                    help="resolve files changed on both sides (default: refuse)")


def _maintenance_commands(cmd) -> None:
    """check, verify, rebuild, compact and stats."""
    sp = cmd("check", cmd_check, "parse every HeroScript, TOML and Markdown file at REF and "
             "print path:line: message for each error")
    sp.add_argument("ref", nargs="?", help="version to check (default: trunk's tip)")
    cmd("verify", cmd_verify, "re-hash every artifact and check every index")
    cmd("rebuild", cmd_rebuild, "regenerate all indexes from the artifacts")
    cmd("compact", cmd_compact, "rewrite the store densely, without LMDB's free pages and "
        "the loose parts of cut uploads, and pack its history: every stored artifact "
        "compressed with a dictionary trained on the store's own (only when no other process "
        "has it open)")
    sp = cmd("stats", cmd_stats, "counts and sizes")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--tables", action="store_true",
                    help="also the bytes each table takes on disk (what makes the store's size)")


def _interop_commands(cmd) -> None:
    """export, import (artifacts and Git) and git map."""
    sp = cmd("export", cmd_export, "export artifacts DIR: every artifact as a file named by "
             "its hash (fossil deconstruct layout); export git GITDIR: the history as a Git "
             "repository (created if missing)")
    sp.add_argument("kind", choices=["artifacts", "git"])
    sp.add_argument("dir")
    sp = cmd("import", cmd_import, "import artifacts DIR: a fossil deconstruct directory; "
             "import git GITDIR: every branch and tag of a Git repository; a missing "
             "STORE is created")
    sp.add_argument("kind", choices=["artifacts", "git"])
    sp.add_argument("dir")
    sp.add_argument("--incremental", action="store_true",
                    help="git: import only commits new since the last (or an interrupted) import")
    sp = cmd("git", cmd_git, "git map [REF]: Git commit id and check-in id of each check-in "
             "reachable from REF, newest first")
    sp.add_argument("action", choices=["map"])
    sp.add_argument("ref", nargs="?")
    sp.add_argument("-n", type=int, metavar="N", help="at most N entries")


def _serve_command(sub) -> None:
    """serve: WebDAV until interrupted, or manage its saved users."""
    sp = sub.add_parser("serve", help="serve the store over WebDAV and peer sync until "
                        "interrupted",
                        description="Serve the store over WebDAV (prints 'webdav: URL') and "
                        "peer sync (prints 'sync: URL'; the same users: ro pulls, rw pushes "
                        "too). "
                        "/ is trunk's tip, /.branches/NAME/ other branches (read-write), "
                        "/.history/REF/ any past version (read-only). Every change is one "
                        "check-in. Without users access is anonymous, only on loopback, "
                        "and only for requests naming a loopback Host. Users: save them in "
                        "the store with --add-user NAME[:ro|rw] (the password is asked for, "
                        "or read from stdin, one line per user; kept scrypt-hashed), then "
                        "serve; --remove-user/--list-users manage them. Each of these exits "
                        "after its change.")
    sp.set_defaults(fn=cmd_serve)
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sp.add_argument("--webdav-port", type=int, default=8023, metavar="N",
                    help="port (default 8023; 0 picks a free one)")
    sp.add_argument("--user", dest="users", action="append", metavar="NAME:PASSWORD[:ro|rw]",
                    help="accept this user for this run (repeatable; rw by default). Not "
                    "recommended: the password is visible to every local user in ps; "
                    "save users with --add-user instead")
    sp.add_argument("--readonly", action="store_true", help="refuse every change")
    sp.add_argument("--noise", action="append", metavar="PATTERN",
                    help="also keep files matching PATTERN out of history (repeatable; "
                    "defaults: .DS_Store ._* Thumbs.db desktop.ini ~$* *.swp *.swx ...)")
    sp.add_argument("--add-user", action="append", metavar="NAME[:ro|rw]",
                    help="save a user in the store (rw by default), then exit; the password "
                    "is asked for on a terminal, else read from stdin (one line per user), "
                    "and kept scrypt-hashed. The old NAME:PASSWORD[:ro|rw] still works, "
                    "with a warning")
    sp.add_argument("--fossil", action="store_true",
                    help="with --add-user: the users may also log in with Fossil's own "
                    "client (fossil clone/sync). Fossil's login needs a password-equivalent "
                    "secret, SHA1(project-code/user/password), kept only for these users")
    sp.add_argument("--remove-user", action="append", metavar="NAME",
                    help="forget a saved user (and its Fossil login), then exit")
    sp.add_argument("--list-users", action="store_true", help="list saved users, then exit")
    sp.add_argument("--sync-port", type=int, metavar="N",
                    help="port of peer sync (default: WebDAV's port + 1, 8024; with "
                    "--webdav-port 0 any free one; 0 picks a free one)")
    sp.add_argument("--no-webdav", action="store_true", help="serve peer sync only")
    sp.add_argument("--no-sync", action="store_true", help="serve WebDAV only")
    sp.add_argument("--public-read", action="store_true",
                    help="sync: anonymous clone and pull from anywhere (push needs a user)")
    sp.add_argument("--follow", action="append", metavar="PEER",
                    help="sync: keep this store in sync with PEER (a saved name or a URL) "
                    "continuously (repeatable)")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "fn", None):
            parser.print_help()
            return 2
        args.fn(args)
        return 0
    except errors.HeroFossilError as exc:
        sys.stderr.write(f"herofossil: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("herofossil: interrupted\n")
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
