"""The repository's own source files, for the tests that read the tree as text."""
import os

SKIPPED_DIRS = {'.git', 'out', '__pycache__', 'fixtures', 'samples'}
TEXT_SUFFIXES = ('.c', '.h', '.cu', '.cuh', '.cpp', '.in', '.py', '.sh', '.md', '.build', '.txt')


def root():
    return os.environ.get('ZT_SOURCE_ROOT') or os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__))))


def files(top=None, suffixes=TEXT_SUFFIXES):
    """Paths relative to the root, build directories (any holding meson-private) left out."""
    top = top or root()
    found = []
    for directory, dirs, names in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not
                         os.path.isdir(os.path.join(directory, d, 'meson-private')))
        for name in sorted(names):
            if name.endswith(suffixes) or name in ('Makefile', 'run'):
                found.append(os.path.relpath(os.path.join(directory, name), top))
    return found
