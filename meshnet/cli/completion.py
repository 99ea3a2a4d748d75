"""Shell completion: `meshctl completion bash|zsh` prints a script that asks
`meshctl __complete WORDS...` for candidates, so commands, kinds and flags come from the same
tables as the parser, and object names from the server (quietly: any error completes nothing).
"""

from __future__ import annotations

from meshnet.api.resources import RESOURCES

BASH = r"""# meshctl bash completion; load with: source <(meshctl completion bash)
_meshctl() {
    local cur words
    cur="${COMP_WORDS[COMP_CWORD]}"
    words=("${COMP_WORDS[@]:1:COMP_CWORD}")
    local IFS=$'\n'
    COMPREPLY=($(meshctl __complete "${words[@]}" 2>/dev/null))
    return 0
}
complete -o default -F _meshctl meshctl
"""

ZSH = r"""#compdef meshctl
# meshctl zsh completion; load with: source <(meshctl completion zsh)
_meshctl() {
    local -a candidates
    candidates=("${(@f)$(meshctl __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    compadd -- "${candidates[@]}"
}
if [ "$funcstack[1]" = "_meshctl" ]; then
    _meshctl "$@"
else
    compdef _meshctl meshctl
fi
"""

NAME_VERBS = {"get", "describe", "delete", "edit", "label", "annotate", "expose"}


def script(shell: str) -> str:
    if shell == "bash":
        return BASH
    if shell == "zsh":
        return ZSH
    raise ValueError(shell)


def kind_words() -> list[str]:
    words = set()
    for r in RESOURCES:
        words.update({r.plural, r.singular, *r.short_names})
    words.add("all")
    return sorted(words)


def candidates(words: list[str], commands: dict, flags_for, names_for) -> list[str]:
    """Completions for the last word given the ones before it.

    commands: {name: {subcommand names}}; flags_for(path) -> option strings;
    names_for(kind) -> object names (may raise; errors complete nothing).
    """
    if not words:
        words = [""]
    *before, cur = words
    positional = [w for w in before if not w.startswith("-")]
    if cur.startswith("-"):
        path = positional[:2]
        return sorted(f for f in flags_for(path) if f.startswith(cur))
    if not positional:
        return sorted(c for c in commands if c.startswith(cur))
    verb = positional[0]
    subs = commands.get(verb) or set()
    if subs and len(positional) == 1:
        return sorted(c for c in subs if c.startswith(cur))
    if verb in NAME_VERBS:
        if len(positional) == 1:
            if "/" in cur:
                kind = cur.split("/", 1)[0]
                try:
                    return sorted(f"{kind}/{n}" for n in names_for(kind)
                                  if f"{kind}/{n}".startswith(cur))
                except Exception:  # noqa: BLE001 - completion must never fail loudly
                    return []
            return [k for k in kind_words() if k.startswith(cur)]
        if len(positional) >= 2 and "/" not in positional[1]:
            try:
                return sorted(n for n in names_for(positional[1].split(",")[0])
                              if n.startswith(cur))
            except Exception:  # noqa: BLE001
                return []
    if verb == "completion":
        return [s for s in ("bash", "zsh") if s.startswith(cur)]
    return []
