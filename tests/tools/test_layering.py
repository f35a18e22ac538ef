"""Data flows one way (docs/design.md §1): files -> data -> model -> kernels -> losses ->
optimizer -> update -> train. Every quoted #include is resolved the way the build resolves it
and checked against the layer rules; header include cycles are refused too."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import source_tree  # noqa: E402

# The build's include directories, in its order (meson.build: inc).
INCLUDE_DIRS = ['.', 'include', 'kernels', 'src', 'models']
# Test suites add the shared test headers' directories.
TEST_INCLUDE_DIRS = ['tests', 'tests/model', 'tests/cudaemu']
# Generated into the build directory.
GENERATED = {'zt_config.h'}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)

# (who, what it must not include): prefixes of repository paths.
RULES = [
    (('models/', 'kernels/'), ('src/zo/', 'src/train/', 'src/cli/')),
    (('src/core/', 'src/io/', 'src/text/', 'src/data/', 'src/dist/'),
     ('models/', 'src/zo/', 'src/train/', 'src/cli/')),
    (('kernels/',), ('models/', 'src/data/', 'src/text/')),
    (('src/zo/',), ('models/', 'src/train/', 'src/cli/')),
    (('src/train/',), ('src/cli/',)),
]


def resolve(root, includer, name):
    extra = TEST_INCLUDE_DIRS if includer.startswith('tests/') else []
    for base in [os.path.dirname(includer)] + INCLUDE_DIRS + extra:
        candidate = os.path.normpath(os.path.join(base, name))
        if os.path.isfile(os.path.join(root, candidate)):
            return candidate
    return None


def include_graph(root, paths):
    graph, unresolved = {}, []
    for path in paths:
        if not path.endswith(('.c', '.h', '.cu', '.cuh', '.cpp')):
            continue
        with open(os.path.join(root, path), encoding='utf-8') as f:
            text = f.read()
        targets = []
        for name in INCLUDE.findall(text):
            if name in GENERATED:
                continue
            target = resolve(root, path, name)
            if target is None:
                unresolved.append(f'{path}: #include "{name}" names no file of the repository')
            else:
                targets.append(target)
        graph[path] = targets
    return graph, unresolved


def violations(graph):
    found = []
    for path, targets in graph.items():
        for who, forbidden in RULES:
            if not path.startswith(who):
                continue
            for target in targets:
                if target.startswith(forbidden):
                    found.append(f'{path} includes {target}, against the data flow')
    return found


def module_of(path):
    """A .c (or .cu) and its header are one module: foo.c + foo.h -> foo."""
    return os.path.splitext(path)[0]


def module_cycles(graph):
    """Cycles between modules that have both a header and a source, e.g. a.c including b.h
    while b.h includes a.h. A header without a source of its own (an internal or common header)
    belongs to the directory's implementation and is not a module."""
    has_header = {module_of(p) for p in graph if p.endswith(('.h', '.cuh'))}
    has_source = {module_of(p) for p in graph if p.endswith(('.c', '.cu', '.cpp'))}
    nodes = has_header & has_source
    modules = {}
    for path, targets in graph.items():
        if module_of(path) not in nodes:
            continue
        edges = modules.setdefault(module_of(path), set())
        edges.update(module_of(t) for t in targets
                     if module_of(t) in nodes and module_of(t) != module_of(path))
    found, state = [], {}

    def visit(node, stack):
        state[node] = 'open'
        for target in sorted(modules.get(node, ())):
            if state.get(target) == 'open':
                found.append('include cycle: ' + ' -> '.join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = 'done'

    for node in sorted(modules):
        if node not in state:
            visit(node, [node])
    return found


def main():
    root = source_tree.root()
    paths = [p for p in source_tree.files(root) if p.split('/')[0] in
             ('src', 'models', 'kernels', 'include', 'tests', 'bench')]
    graph, problems = include_graph(root, paths)
    problems += violations(graph) + module_cycles(graph)
    checked = sum(len(t) for t in graph.values())
    for p in problems:
        print('FAIL', p)
    print(f'{checked} includes in {len(graph)} files checked, {len(problems)} problems')
    return 1 if problems or checked < 200 else 0


if __name__ == '__main__':
    sys.exit(main())
