"""Usage: python scripts/find_duplicates.py src/rmpsnn

Pairs of functions in src/ whose normalised bodies are near-identical (a stand-in for the
`duplicates` tool): identifiers and literals are replaced by placeholders, then difflib compares
token sequences of functions with >= 8 statements' worth of tokens."""

import ast
import difflib
import io
import itertools
import pathlib
import sys
import tokenize

root = pathlib.Path(sys.argv[1])
THRESHOLD = float(sys.argv[2]) if len(sys.argv) > 2 else 0.8
funcs = []
for p in sorted(root.rglob("*.py")):
    src = p.read_text()
    tree = ast.parse(src)
    lines = src.splitlines()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant)
            ):
                body = body[1:]
            if not body:
                continue
            seg = "\n".join(lines[body[0].lineno - 1 : node.end_lineno])
            toks = []
            try:
                for t in tokenize.generate_tokens(io.StringIO(seg).readline):
                    if t.type == tokenize.NAME and t.string not in __import__("keyword").kwlist:
                        toks.append("N")
                    elif t.type in (tokenize.STRING, tokenize.NUMBER):
                        toks.append("L")
                    elif t.type in (tokenize.OP, tokenize.NAME):
                        toks.append(t.string)
            except (tokenize.TokenError, IndentationError):
                continue
            if len(toks) >= 80:
                funcs.append(
                    (
                        f"{p.relative_to(root)}:{node.lineno} {node.name}",
                        toks,
                        (p, node.lineno, node.end_lineno),
                    )
                )
pairs = []
for (a, ta, sa), (b, tb, sb) in itertools.combinations(funcs, 2):
    if sa[0] == sb[0] and (sa[1] <= sb[1] <= sa[2] or sb[1] <= sa[1] <= sb[2]):
        continue  # one function nested in the other: the same lines counted twice
    if min(len(ta), len(tb)) / max(len(ta), len(tb)) < 0.6:
        continue
    r = difflib.SequenceMatcher(None, ta, tb, autojunk=False).ratio()
    if r >= THRESHOLD:
        pairs.append((r, a, b, len(ta), len(tb)))
for r, a, b, la, lb in sorted(pairs, reverse=True):
    print(f"{r:.2f}  {a} ({la} tokens)  ~  {b} ({lb} tokens)")
print(f"{len(funcs)} functions compared, {len(pairs)} pairs >= {THRESHOLD:.2f}")
