#!/usr/bin/env python3
"""Writes the hostile-file catalogue (tests/hostile/files/ and catalogue.json) that
tests/hostile_test.cpp feeds to mmb's readers: each file must be rejected with an mmb::Error that
names the file and the reason, within bounded memory, without a crash.

  /usr/bin/python3 tests/hostile/make_catalogue.py      # rewrites the catalogue, deterministically
"""
import json, os, shutil, struct, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FILES = os.path.join(HERE, "files")
entries = []


def add(name, reader, expect, data=None, files=None, why=""):
    """A file (data) or a directory (files: {name: bytes}) for `reader`; `expect` is a fragment
    of the error's reason."""
    path = os.path.join(FILES, name)
    if files is not None:
        os.makedirs(path, exist_ok=True)
        for n, b in files.items():
            open(os.path.join(path, n), "wb").write(b)
    else:
        open(path, "wb").write(data)
    entries.append({"file": name, "reader": reader, "expect": expect, "why": why})


def st(header, data=b""):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def f32(n):
    return struct.pack("<%df" % n, *range(n))


def png(width, height, depth=8, colour=6, idat=b"\x00" * 16, crc=True, raw_idat=None):
    def chunk(kind, body):
        c = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", c if crc else c ^ 1)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(idat) if raw_idat is None else raw_idat) + chunk(b"IEND", b"")


def jpeg_sof(width, height):
    # SOI, a baseline SOF0 declaring the size with three components, then the end: the header
    # promises an image the file does not hold.
    sof = struct.pack(">BBHBHHB", 0xFF, 0xC0, 17, 8, height, width, 3) + bytes([1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1])
    return b"\xff\xd8" + sof + b"\xff\xd9"


def proto_varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def proto_piece(piece, score, kind):
    body = b"\x0a" + proto_varint(len(piece)) + piece + b"\x15" + struct.pack("<f", score) + b"\x18" + proto_varint(kind)
    return b"\x0a" + proto_varint(len(body)) + body  # ModelProto.pieces (field 1)


shutil.rmtree(FILES, ignore_errors=True)
os.makedirs(FILES)
A = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}

# ---- safetensors ------------------------------------------------------------------------------
add("header_length_2_64.safetensors", "safetensors", "exceeds the limit",
    b"\xff" * 8 + b"{}", why="header length near 2^64")
add("header_past_end.safetensors", "safetensors", "runs past the end",
    struct.pack("<Q", 4096) + b'{"a":1}', why="header length beyond the file")
add("header_not_json.safetensors", "safetensors", "invalid JSON", st(b"{not json!}"))
add("header_too_deep.safetensors", "safetensors", "nested deeper",
    st(b'{"__metadata__":' + b"[" * 5000 + b"]" * 5000 + b"}"), why="JSON nested 5000 deep in a header")
add("offsets_overlap.safetensors", "safetensors", "overlap",
    st({"a": A, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, f32(3)))
add("offsets_out_of_range.safetensors", "safetensors", "data_offsets",
    st({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, f32(2)))
add("offsets_huge.safetensors", "safetensors", "data_offsets",
    st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [18446744073709551608, 18446744073709551615]}}, f32(2)),
    why="offsets near 2^64 (begin + size overflows)")
add("byte_count_mismatch.safetensors", "safetensors", "F32",
    st({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, f32(2)), why="dtype x shape != bytes")
add("shape_overflow.safetensors", "safetensors", "shape",
    st({"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 8]}}, f32(2)))
add("negative_dim.safetensors", "safetensors", "shape", st({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, f32(2)))
add("unknown_dtype.safetensors", "safetensors", "dtype", st({"a": {"dtype": "F99", "shape": [2], "data_offsets": [0, 8]}}, f32(2)))
add("hole_in_buffer.safetensors", "safetensors", "hole",
    st({"a": A, "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}}, f32(5)), why="bytes no tensor covers")
dup = b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}'
add("duplicate_names.safetensors", "safetensors", "appears twice", st(dup, f32(4)))
whole = st({"a": {"dtype": "F32", "shape": [64], "data_offsets": [0, 256]}}, f32(64))
add("truncated_data.safetensors", "safetensors", "past the data buffer", whole[: len(whole) - 100], why="the data cut short")
add("metadata_not_strings.safetensors", "safetensors", "__metadata__", st({"__metadata__": {"k": 3}, "a": A}, f32(2)))

# ---- images -----------------------------------------------------------------------------------
add("png_bomb_declared_huge.png", "image", "outside the limit", png(100000, 100000), why="100000x100000 in 80 bytes")
add("png_bomb_16bit_rgba.png", "image", "pixels exceeds the limit", png(16000, 16000, depth=16, colour=6),
    why="16000x16000 16-bit RGBA: 2 GB the decoder would allocate for the declared size")
add("jpeg_bomb.jpg", "image", "pixels exceeds the limit", jpeg_sof(16000, 16000), why="16000x16000 declared in 25 bytes")
add("jpeg_bomb_wide.jpg", "image", "outside the limit", jpeg_sof(65000, 65000))
real_png = open(os.path.join(ROOT, "tests/fuzz/corpus/image/scene.png"), "rb").read()
dht_counts = [0] * 14 + [45, 255]
add("jpeg_huffman_overflow.jpg", "image", "Huffman table",
    b"\xff\xd8" + bytes.fromhex("ffc000110800080010030122000211010311 01".replace(" ", "")) +
    b"\xff\xc4" + struct.pack(">H", 2 + 17 + 300) + b"\x00" + bytes(dht_counts) + bytes(300) + b"\xff\xd9",
    why="a Huffman table of 300 codes: stb_image 2.27 writes past its 257-entry table")
add("jpeg_huffman_after_scan.jpg", "image", "Huffman table",
    open(os.path.join(ROOT, "tests/fuzz/corpus/image/regression_huffman_after_scan.jpg"), "rb").read(),
    why="found by fuzzing: after a scan stb_image reads a DHT of 258 codes where no marker walk would look")
add("jpeg_undefined_huffman_table.jpg", "image", "corrupt image",
    open(os.path.join(ROOT, "tests/fuzz/corpus/image/regression_undefined_huffman_table.jpg"), "rb").read(),
    why="found by fuzzing: a scan names a Huffman table no DHT defined; stb_image 2.27 decodes with uncleared memory")
add("png_empty_idat.png", "image", "empty IDAT", png(4, 4, raw_idat=b""),
    why="a zero-length IDAT chunk: stb_image 2.27 copies it into a null buffer")
add("png_idat_length_bomb.png", "image", "more than the file holds",
    open(os.path.join(ROOT, "tests/fuzz/corpus/image/regression_idat_length_bomb.png"), "rb").read(),
    why="found by fuzzing: a second IDAT chunk declares 1.1 GB in a 558-byte file; stb_image 2.27 allocates 2 GB first")
add("png_truncated.png", "image", "corrupt PNG", real_png[: len(real_png) // 2])
add("png_bad_crc_tiny.png", "image", "corrupt image", png(4, 4, idat=b"\x00"), why="a 4x4 image with one byte of pixels")
real_jpg = open(os.path.join(ROOT, "tests/fixtures/red16x8.jpg"), "rb").read()
add("jpeg_truncated.jpg", "image", "corrupt image", real_jpg[:200])
add("not_an_image.png", "image", "not a PNG or JPEG", b"GIF89a this is not what it says")
add("empty.png", "image", "empty file", b"")

# ---- JSON, JSONL and what is read from them ---------------------------------------------------
add("nested_1e6.json", "json", "nested deeper", b"[" * 1000000 + b"]" * 1000000, why="arrays nested 10^6 deep")
add("invalid_utf8.json", "json", "invalid JSON", b'{"name": "\xff\xfe\xfd"}')
add("duplicate_key.json", "json", "appears twice", b'{"hidden_size": 64, "hidden_size": 4096}')
cfg = json.load(open(os.path.join(ROOT, "models/base/vlm/config.json")))
huge = json.dumps(cfg).replace('"hidden_size": %d' % cfg["text_config"]["hidden_size"], '"hidden_size": 1e400', 1)
add("config_huge_float.json", "llava_config", "number overflow", huge.encode(), why="1e400 for an integer size")
huge2 = json.dumps(cfg).replace('"hidden_size": %d' % cfg["text_config"]["hidden_size"], '"hidden_size": 18446744073709551616', 1)
add("config_2_64.json", "llava_config", "not an integer", huge2.encode(), why="2^64 for an integer size")
stem = json.loads(json.dumps(cfg))
stem["vision_config"]["mmb_stem_channels"] = [32, 3.5e94]
add("config_stem_float.json", "llava_config", "mmb_stem_channels'[1] = 3.5e+94 is not an integer", json.dumps(stem).encode(),
    why="a float past int64 in an integer list: nlohmann's plain cast is undefined behaviour (found by fuzzing)")
add("nested_line.jsonl", "jsonl", "nested deeper", b'{"a": 1}\n' + b"[" * 100000 + b"]" * 100000 + b"\n")
add("nul_in_line.jsonl", "jsonl", ":2", b'{"a": 1}\n{"a": "\x00"}\n', why="a raw NUL inside a string, line 2")
add("scene_bad_object.jsonl", "scenes", ":1", b'{"id": 0, "objects": [{"shape": "dodecahedron"}]}\n')
add("pairs_missing_rejected.jsonl", "prefs", "rejected", b'{"prompt": "Q", "chosen": "A", "images": ["a.png"]}\n')
add("pairs_image_outside_root.jsonl", "prefs_images", "outside",
    b'{"prompt": "Q", "chosen": "A", "rejected": "B", "images": ["../../etc/passwd"]}\n', why="an image path leaving its root")

# ---- model directories ------------------------------------------------------------------------
add("index_escape", "index", "not a file name in the model directory", files={
    "model.safetensors.index.json": json.dumps({"weight_map": {"weight": "../index_outside.safetensors",
                                                             "bias": "model-00001.safetensors"}}).encode()},
    why="a shard name that leaves the model directory")
add("index_absolute", "index", "not a file name in the model directory", files={
    "model.safetensors.index.json": json.dumps({"weight_map": {"weight": "/etc/passwd"}}).encode()})
add("chat_template_unknown", "chat_template", "unknown template", files={
    "chat_template.json": b'{"name": "vicuna_v99", "system": 7}'})

# ---- tokenizers that lie ----------------------------------------------------------------------
add("tokenizer_random.model", "tokenizer", "not a SentencePiece model", bytes(range(256)) * 8)
real_tok = open(os.path.join(ROOT, "models/base/vlm/tokenizer.model"), "rb").read()
add("tokenizer_truncated.model", "tokenizer", "not a SentencePiece model", real_tok[: len(real_tok) // 2])
no_bos = proto_piece(b"<unk>", 0.0, 2) + proto_piece(b"a", -1.0, 1) + proto_piece(b"b", -2.0, 1)
add("tokenizer_without_bos.model", "tokenizer", "no BOS piece", no_bos, why="a valid model with no <s> or </s>")
huge_piece = b"\x0a" + proto_varint(1 << 40) + b"\x0a\x01a"
add("tokenizer_length_lies.model", "tokenizer", "not a SentencePiece model", huge_piece,
    why="a piece that declares 2^40 bytes")

json.dump(entries, open(os.path.join(HERE, "catalogue.json"), "w"), indent=1)
open(os.path.join(HERE, "catalogue.json"), "a").write("\n")
print(len(entries), "hostile files in", FILES)
