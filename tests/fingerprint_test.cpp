// Fingerprints: key order does not matter, any change of a part does and is named.
#include "mmb/fingerprint.h"

#include <gtest/gtest.h>

#include "mmb/atomic_file.h"
#include "test_util.h"

using mmb::Fingerprint;
using mmb::Json;
using mmb::testing::expect_throw_with;
using mmb::testing::TempDir;

TEST(Fingerprint, Fnv1aMatchesPublishedValues) {
  EXPECT_EQ(mmb::fnv1a_hex(""), "cbf29ce484222325");   // FNV-1a 64 offset basis
  EXPECT_EQ(mmb::fnv1a_hex("a"), "af63dc4c8601ec8c");  // published test vector
  EXPECT_EQ(mmb::fnv1a_hex("foobar"), "85944171f73967e8");
}

TEST(Fingerprint, KeyOrderDoesNotMatterButValuesAndFilesDo) {
  TempDir d;
  mmb::write_file_atomic(d.file("w.bin"), "weights-1");
  Fingerprint a, b;
  a.add("settings", Json::parse(R"({"beta": 0.1, "max_length": 512})")).add_file("weights", d.file("w.bin"));
  b.add("settings", Json::parse(R"({"max_length": 512, "beta": 0.1})")).add_file("weights", d.file("w.bin"));
  EXPECT_EQ(a.id(), b.id());
  EXPECT_TRUE(a.differences(b).empty());
  a.require_same(b, "test", "cache");

  mmb::write_file_atomic(d.file("w.bin"), "weights-2");
  Fingerprint c;
  c.add("settings", Json::parse(R"({"beta": 0.2, "max_length": 512})")).add_file("weights", d.file("w.bin"));
  EXPECT_NE(a.id(), c.id());
  EXPECT_EQ(a.differences(c), (std::vector<std::string>{"settings", "weights"}));
  expect_throw_with([&] { c.require_same(a, "ref cache", "run/ref.json"); },
                    "ref cache: run/ref.json was computed from other inputs: settings, weights changed");
  Fingerprint only;
  only.add("settings", Json::parse(R"({"beta": 0.1, "max_length": 512})"));
  EXPECT_EQ(only.differences(a), (std::vector<std::string>{"weights"}));
}

TEST(Fingerprint, JsonRoundTripAndTamperedIdsAreRefused) {
  Fingerprint a;
  a.add("x", 1).add("y", "two");
  const Fingerprint back = Fingerprint::from_json(a.to_json(), "f.json");
  EXPECT_EQ(back.id(), a.id());
  Json bad = a.to_json();
  bad["parts"]["x"] = "0000000000000000";
  expect_throw_with([&] { Fingerprint::from_json(bad, "f.json"); }, "f.json: id");
  expect_throw_with([&] { Fingerprint::from_json(Json::object(), "f.json"); }, "missing key 'parts'");
  expect_throw_with([] { mmb::file_digest("/nonexistent/file"); }, "file_digest: cannot open /nonexistent/file");
}
