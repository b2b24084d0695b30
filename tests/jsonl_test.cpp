#include "mmb/jsonl.h"

#include "test_util.h"

using mmb::testing::TempDir;

TEST(Jsonl, RoundTripSkipsBlankLines) {
  TempDir d;
  {
    mmb::JsonlWriter w(d.file("a.jsonl"));
    w.write({{"step", 1}, {"loss", 0.5}});
    w.write({{"step", 2}, {"text", "line\nbreak"}});
    w.close();
    EXPECT_EQ(w.lines_written(), 2);
  }
  auto rows = mmb::read_jsonl_file(d.file("a.jsonl"));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1]["text"], "line\nbreak");
  mmb::write_file_atomic(d.file("b.jsonl"), "{\"a\":1}\n\n  \n{\"a\":2}\r\n");
  EXPECT_EQ(mmb::read_jsonl_file(d.file("b.jsonl")).size(), 2u);
}

TEST(Jsonl, BadLineReportsFileAndLineNumber) {
  TempDir d;
  mmb::write_file_atomic(d.file("bad.jsonl"), "{\"a\":1}\n{\"a\":2}\n\n{\"a\":3,}\n{\"a\":4}\n");
  mmb::JsonlReader r(d.file("bad.jsonl"));
  mmb::Json v;
  ASSERT_TRUE(r.next(v));
  ASSERT_TRUE(r.next(v));
  EXPECT_EQ(r.line_number(), 2);
  mmb::testing::expect_throw_with([&] { r.next(v); }, d.file("bad.jsonl") + ":4");
}

TEST(Jsonl, UnclosedWriterLeavesNoFile) {
  TempDir d;
  {
    mmb::JsonlWriter w(d.file("c.jsonl"));
    w.write({{"a", 1}});
  }
  mmb::testing::expect_throw_with([&] { mmb::JsonlReader r(d.file("c.jsonl")); }, "cannot open");
}

TEST(Json, GetNamesContextAndKey) {
  mmb::Json j = {{"hidden_size", 64}, {"name", "x"}};
  EXPECT_EQ(mmb::json_get<int>(j, "hidden_size", "config.json"), 64);
  EXPECT_EQ(mmb::json_get_or<int>(j, "layers", 3, "config.json"), 3);
  mmb::testing::expect_throw_with([&] { mmb::json_get<int>(j, "layers", "config.json"); },
                                  "config.json: missing key 'layers'");
  mmb::testing::expect_throw_with([&] { mmb::json_get<int>(j, "name", "config.json"); },
                                  "key 'name' has the wrong type");
  TempDir d;
  mmb::write_file_atomic(d.file("bad.json"), "{\"a\": [1, 2}");
  mmb::testing::expect_throw_with([&] { mmb::read_json_file(d.file("bad.json")); }, "bad.json");
}
