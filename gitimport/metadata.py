"""Where Git's own metadata lives in the store, and the local index over it.

Global state (artifacts, so ``rebuild`` and sync keep it):

* each imported commit's raw Git object is an ordinary artifact; the
  check-in's manifest links it with ``T +git-commit * <artifact id>``;
* trees that cannot be rebuilt from the check-in's files (gitlinks, odd
  modes, empty subtrees, non-canonical order) are kept raw as artifacts,
  listed in a small artifact linked by ``T +git-trees * <artifact id>``;
* refs are control artifacts: ``T +git-ref:REFNAME <check-in> [tag ids]``
  (annotated tags: comma-separated artifact ids of the raw tag objects,
  outermost first), ``T +git-head <check-in> REFNAME`` names Git's default
  branch; a moved or deleted ref is cancelled with ``-git-ref:REFNAME``.

Local state (meta namespace ``git``; re-derived from the artifacts when it
does not match the store, e.g. after ``rebuild``): ``c/SHA`` -> check-in,
``r/REFNAME`` -> ref record, ``head``, ``frontier`` (imported commits with no
imported child), ``mark`` (last check-in indexed, and the index's ``version``).
A check-in's Git id is not indexed: it is the hash of the raw commit its
manifest links (an index of it cost 88 KB of the real history's 3.5 MB store).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from herofossil.gitimport.objects import object_id
from herofossil.store import manifest as mf
from herofossil.store.maintenance import iter_artifacts

NS = "git"
TAG_COMMIT = "git-commit"
TAG_TREES = "git-trees"
TAG_REF = "git-ref:"
TAG_HEAD = "git-head"
TREES_MAGIC = b"herofossil-git-trees 1\n"
# 2: no ``k/CID`` entries (an index marked with an older version is derived again)
VERSION = 2


def encode_trees(overrides: dict[str, str]) -> bytes:
    """The artifact listing raw trees by folder ('' is the root)."""
    lines = [f"{aid} {mf.fossilize(path)}\n" for path, aid in sorted(overrides.items())]
    return TREES_MAGIC + "".join(lines).encode("utf-8", "surrogateescape")


def decode_trees(data: bytes) -> dict[str, str]:
    """Inverse of :func:`encode_trees`."""
    out = {}
    for line in data[len(TREES_MAGIC):].decode("utf-8", "surrogateescape").splitlines():
        aid, _, path = line.partition(" ")
        out[mf.defossilize(path)] = aid
    return out


@dataclass
class RefRecord:
    """Where a Git ref points: a check-in, through annotated tag objects if any."""

    cid: str
    tags: list[str] = field(default_factory=list)

    def dumps(self) -> bytes:
        return json.dumps({"cid": self.cid, "tags": self.tags}).encode()

    @classmethod
    def loads(cls, raw: bytes) -> RefRecord:
        d = json.loads(raw)
        return cls(d["cid"], d.get("tags", []))


def git_tags_of(m: mf.Manifest) -> tuple[str | None, str | None]:
    """(raw commit artifact, trees artifact) a manifest links, if any."""
    commit = trees = None
    for t in m.tags:
        if t.kind == "+" and t.target == "*":
            if t.name == TAG_COMMIT:
                commit = t.value
            elif t.name == TAG_TREES:
                trees = t.value
    return commit, trees


_COMMIT_CARD = f"\nT +{TAG_COMMIT} * ".encode()


def raw_commit_of(manifest: bytes) -> str | None:
    """The raw commit artifact a check-in's manifest links, found without parsing it
    (parsing took 200 us of a 230 us lookup on the real history: an export or a map looks up
    every check-in). Safe on a manifest: no other card holds a newline followed by "T +",
    every card's text is escaped, and T cards name no spaces."""
    at = manifest.find(_COMMIT_CARD)
    if at < 0:
        return None
    start = at + len(_COMMIT_CARD)
    return manifest[start:manifest.index(b"\n", start)].decode("ascii")


class GitIndex:
    """The local Git index of a store (see the module docstring)."""

    def __init__(self, repo):
        self.repo = repo
        self._puts: list[tuple[str, bytes]] = []
        self._dels: list[str] = []

    # ---- reads
    def get(self, key: str) -> bytes | None:
        return self.repo.plumbing.meta_get(NS, key)

    def checkin_of(self, sha: str) -> str | None:
        v = self.get("c/" + sha)
        return v.hex() if v else None

    def checkins_of(self, shas) -> dict[str, str]:
        got = self.repo.plumbing.meta_get_many(NS, ["c/" + s for s in shas])
        return {k[2:]: v.hex() for k, v in got.items()}

    def sha_of(self, cid: str) -> str | None:
        """The Git id of check-in ``cid``: the hash of the raw commit its manifest links
        (None for a check-in made in the store, not imported)."""
        raw_id = raw_commit_of(self.repo.artifact(cid))
        return object_id("commit", self.repo.artifact(raw_id)) if raw_id else None

    def refs(self) -> dict[str, RefRecord]:
        return {k[2:]: RefRecord.loads(v) for k, v in self.repo.plumbing.meta_items(NS, "r/")}

    def head(self) -> str | None:
        v = self.get("head")
        return v.decode() if v else None

    def json(self, key: str, default):
        v = self.get(key)
        return json.loads(v) if v else default

    # ---- writes (queued, applied by ``commit``)
    def put(self, key: str, value: bytes) -> None:
        self._puts.append((key, value))

    def delete(self, key: str) -> None:
        self._dels.append(key)

    def map(self, sha: str, cid: str) -> None:
        self.put("c/" + sha, bytes.fromhex(cid))

    def mark(self) -> None:
        seq = self.repo.plumbing.last_seq()
        rows = self.repo.plumbing.checkins_after(seq - 1) if seq else []
        cid = rows[0][1].id if rows else ""
        self.put("mark", json.dumps({"seq": seq, "cid": cid, "version": VERSION}).encode())

    def commit(self) -> None:
        self.repo.plumbing.meta_update(NS, self._puts, self._dels)
        self._puts, self._dels = [], []

    # ---- keeping it in step with the artifacts
    def sync(self) -> None:
        """Index check-ins added since the last time; re-derive all when out of step."""
        mark = self.json("mark", {"seq": 0, "cid": ""})
        seq = mark["seq"]
        if seq and mark.get("version", 1) != VERSION:
            self.reindex()
            return
        rows = self.repo.plumbing.checkins_after(seq - 1 if seq else 0)
        if seq:
            if not rows or rows[0][0] != seq or rows[0][1].id != mark["cid"]:
                self.reindex()
                return
            rows = rows[1:]
        if not rows:
            return
        for _, ci in rows:
            self._index_checkin(ci.id)
        self.mark()
        self.commit()

    def _index_checkin(self, cid: str) -> str | None:
        sha = self.sha_of(cid)
        if sha is not None:
            self.map(sha, cid)
        return sha

    def reindex(self) -> None:
        """Throw the local index away and derive it from the artifacts alone."""
        old = [k for k, _ in self.repo.plumbing.meta_items(NS, "")]
        self._puts, self._dels = [], old
        controls = []
        for _aid, data in iter_artifacts(self.repo):
            art = mf.parse_artifact(data) if data.endswith(b"\n") else None
            if isinstance(art, mf.ControlArtifact) and any(
                    t.name.startswith(TAG_REF) or t.name == TAG_HEAD for t in art.tags):
                controls.append(art)
        shas: dict[str, str] = {}
        parents: set[str] = set()
        for _, ci in self.repo.plumbing.checkins_after(0):
            sha = self._index_checkin(ci.id)
            if sha is not None:
                shas[ci.id] = sha
                parents.update(ci.parents)
        refs: dict[str, RefRecord] = {}
        head = None
        for ctl in sorted(controls, key=lambda c: c.date):
            for t in ctl.tags:
                if t.name.startswith(TAG_REF):
                    name = t.name[len(TAG_REF):]
                    if t.kind == "+":
                        refs[name] = RefRecord(t.target, (t.value or "").split(",") if t.value
                                               else [])
                    elif name in refs and refs[name].cid == t.target:
                        del refs[name]
                elif t.name == TAG_HEAD and t.kind == "+":
                    head = t.value
        for name, rec in refs.items():
            self.put("r/" + name, rec.dumps())
        if head:
            self.put("head", head.encode())
            from herofossil.gitimport.importer import name_default

            name_default(self.repo, head)
        frontier = {s for c, s in shas.items() if c not in parents}
        self.put("frontier", json.dumps(sorted(frontier)).encode())
        self.mark()
        self.commit()
