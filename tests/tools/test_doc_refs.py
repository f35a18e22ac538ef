"""Every citation points at something in the repository: docs/<file>.md §N names a section
that exists, an item label of §9 (e.g. "§9 B2") appears in that section, and a repository path
mentioned in code or docs names a file that exists. Files outside the repository (the old
DESIGN file, the shared reference folder) are never cited."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import source_tree  # noqa: E402

OUTSIDE = re.compile(r'DESIGN\.md|reference/(?:spec|anchors|distributed|style)\.md|\.\./shared')
# A spec or design citation by section that names no file (the file is always docs/...).
UNQUALIFIED = re.compile(r'(?<![/\w])(?:spec|design)(?:\.md)?,?\s+(?:§|section\s+\d|[A-D]\d)',
                         re.I)
DOC_CITATION = re.compile(r'docs/(\w+)\.md((?:[ ,;]*(?:and )?§\s?\d+(?:\.\d+)?(?:\s?[A-D]\d+)?'
                          r'(?:[-–]\d+(?:\.\d+)?)?)+)')
SECTION = re.compile(r'§\s?(\d+(?:\.\d+)?)(?:\s?([A-D]\d+))?(?:[-–](\d+(?:\.\d+)?))?')
REPO_PATH = re.compile(r'(?<![\w/.])((?:src|models|kernels|tests|bench|tools|docs|include|demo)'
                       r'/[\w./-]*\w\.(?:c|h|cu|cuh|cpp|py|sh|md|json|build|txt))\b')
HEADING = re.compile(r'^#{2,4}\s+(\d+(?:\.\d+)*)[.\s]', re.M)


def sections(text):
    """Section number -> its text (up to the next heading of any level)."""
    found, marks = {}, list(HEADING.finditer(text))
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        found[m.group(1)] = text[m.start():end]
    return found


def whole_section(doc, number):
    """A section with its sub-sections."""
    return ''.join(body for key, body in doc.items()
                   if key == number or key.startswith(number + '.'))


def check_file(root, path, docs, problems):
    with open(os.path.join(root, path), encoding='utf-8', errors='replace') as f:
        text = f.read()
    count = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        where = f'{path}:{lineno}'
        if OUTSIDE.search(line):
            problems.append(f'{where}: cites a file outside the repository: {line.strip()[:90]}')
        if UNQUALIFIED.search(line):
            problems.append(f'{where}: a citation without its file: {line.strip()[:90]}')
        for m in DOC_CITATION.finditer(line):
            name = m.group(1)
            if name not in docs:
                problems.append(f'{where}: docs/{name}.md does not exist')
                continue
            for s in SECTION.finditer(m.group(2)):
                count += 1
                for number in (s.group(1), s.group(3)):
                    if number and number not in docs[name]:
                        problems.append(f'{where}: docs/{name}.md has no section {number}')
                label = s.group(2)
                if label and not re.search(r'\b' + label + r'\b',
                                           whole_section(docs[name], s.group(1))):
                    problems.append(f'{where}: docs/{name}.md §{s.group(1)} has no item {label}')
        for m in REPO_PATH.finditer(line):
            count += 1
            if not os.path.exists(os.path.join(root, m.group(1))):
                problems.append(f'{where}: names {m.group(1)}, which does not exist')
    return count


def main():
    root = source_tree.root()
    docs = {}
    for name in os.listdir(os.path.join(root, 'docs')):
        if name.endswith('.md'):
            with open(os.path.join(root, 'docs', name), encoding='utf-8') as f:
                docs[name[:-3]] = sections(f.read())
    problems, count = [], 0
    for path in source_tree.files(root):
        count += check_file(root, path, docs, problems)
    for p in problems:
        print('FAIL', p)
    print(f'{count} citations and paths checked, {len(problems)} problems')
    return 1 if problems or count < 100 else 0


if __name__ == '__main__':
    sys.exit(main())
