"""The C PNG writer (src/io/png_write.c) read by an independent decoder: Python's struct and
zlib. tests/io/test_png_write --write DIR writes the images; this checks the signature, every
chunk's CRC-32, IHDR (8-bit RGB, no interlace), the zlib stream as stored deflate blocks of at
most 65535 bytes each with their one's-complement lengths, its Adler-32, filter byte 0 on every
row, and every pixel against the formula the C side used (pattern_pixel)."""
import os
import struct
import subprocess
import sys
import tempfile
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_chunks(data):
    assert data[:8] == SIGNATURE, "signature"
    chunks, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body), f"{kind}: CRC {crc:08x}"
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data), "trailing bytes"
    kinds = [k for k, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds, kinds
    return chunks


def stored_blocks(stream):
    """The payload of a zlib stream of stored deflate blocks, walked by hand."""
    cmf, flg = stream[0], stream[1]
    assert cmf & 15 == 8 and (cmf << 8 | flg) % 31 == 0 and not flg & 32, "zlib header"
    pos, out, sizes = 2, bytearray(), []
    while True:
        header = stream[pos]
        assert header >> 1 == 0, f"block type {header >> 1 & 3}, not stored"
        length, nlength = struct.unpack("<HH", stream[pos + 1:pos + 5])
        assert length ^ nlength == 0xFFFF, "NLEN"
        out += stream[pos + 5:pos + 5 + length]
        sizes.append(length)
        pos += 5 + length
        if header & 1:
            break
    (adler,) = struct.unpack(">I", stream[pos:pos + 4])
    assert adler == zlib.adler32(bytes(out)), "Adler-32"
    assert pos + 4 == len(stream), "bytes after the Adler-32"
    return bytes(out), sizes


def decode(path):
    with open(path, "rb") as f:
        chunks = read_chunks(f.read())
    width, height, depth, colour, method, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, method, filt, interlace) == (8, 2, 0, 0, 0), "IHDR"
    stream = b"".join(body for kind, body in chunks if kind == b"IDAT")
    raw, sizes = stored_blocks(stream)
    assert raw == zlib.decompress(stream), "zlib disagrees"
    assert all(n <= 65535 for n in sizes), sizes
    row = 1 + 3 * width
    assert len(raw) == height * row, (len(raw), height, row)
    assert all(raw[y * row] == 0 for y in range(height)), "filter bytes"
    pixels = [[tuple(raw[y * row + 1 + 3 * x:y * row + 4 + 3 * x]) for x in range(width)]
              for y in range(height)]
    return width, height, sizes, pixels


def pattern_pixel(x, y):
    return ((x * 7 + y * 3) & 255, (x * y) & 255, (255 - x + 2 * y) & 255)


def main():
    helper = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([helper, "--write", d], check=True)
        for name, want_w, want_h, want_blocks in (("pattern.png", 203, 121, 2), ("one.png", 1, 1, 1)):
            width, height, sizes, pixels = decode(os.path.join(d, name))
            assert (width, height) == (want_w, want_h), (name, width, height)
            assert len(sizes) == want_blocks, (name, sizes)
            bad = [(x, y) for y in range(height) for x in range(width)
                   if pixels[y][x] != pattern_pixel(x, y)]
            assert not bad, f"{name}: {len(bad)} pixels differ, first {bad[:3]}"
            print(f"{name}: {width} x {height}, stored blocks {sizes}, every pixel right")
        assert sorted(os.listdir(d)) == ["one.png", "pattern.png"], os.listdir(d)


if __name__ == "__main__":
    main()
