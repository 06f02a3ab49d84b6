#!/usr/bin/env python3
"""Prints the directory of every Flux Kustomization's spec.path in each repository under
CORPUS (one repository per sub-directory), once each: what kustomize-controller builds.

    python3 bench/flux-paths.py ../shared/corpus > /tmp/paths.txt
    time (while read -r d; do kubectl kustomize --load-restrictor LoadRestrictionsNone "$d" \\
        >/dev/null 2>&1; done < /tmp/paths.txt)

Needs PyYAML (the bench's virtualenv has it). Paths with ${VAR} are left out, as are paths
that are not directories of the repository."""
import os
import sys

import yaml


def documents(path):
    try:
        with open(path, "rb") as f:
            yield from yaml.load_all(f, Loader=yaml.CSafeLoader)
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return


def main(corpus):
    for repo in sorted(os.listdir(corpus)):
        root = os.path.join(corpus, repo)
        if not os.path.isdir(root):
            continue
        seen = set()
        for dirpath, _, files in os.walk(root):
            for name in sorted(files):
                if not name.endswith((".yaml", ".yml")):
                    continue
                for doc in documents(os.path.join(dirpath, name)):
                    if not isinstance(doc, dict) or doc.get("kind") != "Kustomization":
                        continue
                    if not str(doc.get("apiVersion", "")).startswith("kustomize.toolkit.fluxcd.io/"):
                        continue
                    spec = doc.get("spec") or {}
                    path = str(spec.get("path") or "")
                    if "${" in path:
                        continue
                    target = os.path.normpath(os.path.join(root, path))
                    if os.path.isdir(target) and target not in seen:
                        seen.add(target)
                        print(target)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/corpus")
