#include "mmb/safetensors.h"

#include "mmb/atomic_file.h"
#include "mmb/json.h"
#include "test_util.h"

using mmb::testing::expect_throw_with;
using mmb::testing::TempDir;

namespace {

// A file image from a raw header string and a data buffer, with a chosen header-length field.
std::string make_file(const std::string& header, const std::string& data, int64_t claimed_len = -1) {
  uint64_t n = claimed_len < 0 ? header.size() : uint64_t(claimed_len);
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(char((n >> (8 * i)) & 0xff));
  return out + header + data;
}

void expect_rejected(const std::string& bytes, const std::string& needle) {
  expect_throw_with([&] { mmb::parse_safetensors_header(bytes, "bad.safetensors"); }, needle);
  TempDir d;  // and through the memory-mapped reader
  mmb::write_file_atomic(d.file("bad.safetensors"), bytes);
  expect_throw_with([&] { mmb::SafetensorsFile f(d.file("bad.safetensors")); }, needle);
}

}  // namespace

TEST(Safetensors, RoundTripEveryDtype) {
  TempDir d;
  torch::manual_seed(0);
  std::vector<std::pair<std::string, torch::Tensor>> ts = {
      {"f64", torch::randn({3, 4}, torch::kFloat64)},
      {"f32", torch::randn({2, 3, 5})},
      {"f16", torch::randn({7}).to(torch::kFloat16)},
      {"bf16", torch::randn({4, 4}).to(torch::kBFloat16)},
      {"i64", torch::randint(-1000000, 1000000, {6}, torch::kInt64)},
      {"i32", torch::randint(-1000, 1000, {2, 2}, torch::kInt32)},
      {"i16", torch::randint(-300, 300, {5}, torch::kInt16)},
      {"i8", torch::randint(-100, 100, {3}, torch::kInt8)},
      {"u8", torch::randint(0, 255, {9}, torch::kUInt8)},
      {"bool", torch::rand({4}) > 0.5},
      {"scalar", torch::tensor(3.5f).reshape({})},
      {"empty", torch::zeros({0, 3})},
      {"strided", torch::arange(12, torch::kFloat32).reshape({3, 4}).t()},
  };
  mmb::save_safetensors(d.file("all.safetensors"), ts, {{"format", "pt"}, {"note", "mmb"}});
  mmb::SafetensorsFile f(d.file("all.safetensors"));
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.entries().size(), ts.size());
  for (const auto& [name, t] : ts) {
    ASSERT_TRUE(f.contains(name)) << name;
    torch::Tensor back = f.tensor(name);
    EXPECT_EQ(back.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(back.sizes(), t.sizes()) << name;
    EXPECT_TRUE(torch::equal(back, t.contiguous())) << name;
  }
  // Data buffer is 8-byte aligned after the header.
  auto header = mmb::parse_safetensors_header(mmb::read_file(d.file("all.safetensors")), "all");
  EXPECT_EQ(header.data_start % 8, 0u);
}

TEST(Safetensors, MappedTensorsAreCopyOnWrite) {
  TempDir d;
  mmb::save_safetensors(d.file("w.safetensors"), {{"w", torch::ones({4})}});
  std::string before = mmb::read_file(d.file("w.safetensors"));
  {
    auto t = mmb::load_safetensors(d.file("w.safetensors")).at("w");
    t.mul_(7);
    EXPECT_EQ(t[0].item<float>(), 7.0f);
  }
  EXPECT_EQ(mmb::read_file(d.file("w.safetensors")), before);
  EXPECT_EQ(mmb::load_safetensors(d.file("w.safetensors")).at("w")[0].item<float>(), 1.0f);
}

TEST(Safetensors, RejectsMalformedFiles) {
  const std::string ok_header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string data(8, '\0');
  ASSERT_NO_THROW(mmb::parse_safetensors_header(make_file(ok_header, data), "ok"));

  // 1. shorter than the length field
  expect_rejected(std::string("\x05\x00\x00", 3), "shorter than the 8-byte header length");
  // 2. truncated data
  expect_rejected(make_file(ok_header, data.substr(0, 5)), "past the data buffer");
  // 3. header length lies (past the end of the file)
  expect_rejected(make_file(ok_header, data, 100000), "runs past the end of the file");
  // 4. absurd header length
  expect_rejected(make_file(ok_header, data, int64_t(1) << 40), "exceeds the limit");
  // 5. offsets past the end
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", data),
                  "past the data buffer");
  // 6. overlapping tensors
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                            data),
                  "overlaps");
  // 7. byte count does not match shape x dtype
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data),
                  "needs 12");
  // 8. bad JSON
  expect_rejected(make_file(R"({"a":{"dtype":"F32",)", data), "invalid JSON");
  // 9. unknown dtype
  expect_rejected(make_file(R"({"a":{"dtype":"F13","shape":[2],"data_offsets":[0,8]}})", data),
                  "unknown dtype 'F13'");
  // 10. header is JSON but not an object
  expect_rejected(make_file(R"([1,2,3])", data), "does not start with '{'");
  // 11. begin > end
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", data),
                  "begin 8 > end 0");
  // 12. negative dimension
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data),
                  "non-negative integer");
  // 13. shape product overflows
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})",
                            data),
                  "overflows");
  // 14. missing field
  expect_rejected(make_file(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", data), "missing array 'shape'");
  // 15. unexpected field
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", data),
                  "unexpected field 'x'");
  // 16. a hole / trailing bytes in the data buffer
  expect_rejected(make_file(ok_header, data + "junk"), "trailing bytes");
  // 17. metadata values must be strings
  expect_rejected(make_file(R"({"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                            data),
                  "is not a string");
  // 18. data_offsets of the wrong arity
  expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data),
                  "must be [begin, end]");
}

TEST(Safetensors, MissingTensorAndUnsupportedDtypeNameTheProblem) {
  TempDir d;
  mmb::save_safetensors(d.file("m.safetensors"), {{"x", torch::zeros({2})}});
  mmb::SafetensorsFile f(d.file("m.safetensors"));
  expect_throw_with([&] { f.tensor("y"); }, "no tensor named 'y'");
  const std::string u16 = make_file(R"({"a":{"dtype":"U16","shape":[4],"data_offsets":[0,8]}})",
                                    std::string(8, '\0'));
  mmb::write_file_atomic(d.file("u16.safetensors"), u16);
  mmb::SafetensorsFile g(d.file("u16.safetensors"));  // valid file
  expect_throw_with([&] { g.tensor("a"); }, "U16 is not supported");
  expect_throw_with([&] { mmb::SafetensorsFile h(d.file("absent.safetensors")); }, "cannot open");
}

TEST(Safetensors, WriterRejectsBadNames) {
  expect_throw_with([] { mmb::serialize_safetensors({{"a", torch::zeros({1})}, {"a", torch::zeros({1})}}); },
                    "duplicate tensor name 'a'");
  expect_throw_with([] { mmb::serialize_safetensors({{"__metadata__", torch::zeros({1})}}); },
                    "invalid tensor name");
}

TEST(Safetensors, MisalignedDataIsCopied) {
  // Header padded so the data starts at an odd offset: tensor() must still return exact values.
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} )";  // 57 bytes
  float vals[2] = {1.5f, -2.25f};
  std::string data(reinterpret_cast<const char*>(vals), 8);
  TempDir d;
  mmb::write_file_atomic(d.file("odd.safetensors"), make_file(header, data));
  auto t = mmb::SafetensorsFile(d.file("odd.safetensors")).tensor("a");
  EXPECT_EQ(t[0].item<float>(), 1.5f);
  EXPECT_EQ(t[1].item<float>(), -2.25f);
}

namespace {
std::string run_command(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = ::pclose(p);
  if (rc != 0) throw std::runtime_error("command failed (" + std::to_string(rc) + "): " + cmd);
  return out;
}
const std::string kRef = std::string(MMB_PYTHON) + " " + MMB_SOURCE_DIR + "/tests/reference/safetensors_ref.py";
}  // namespace

TEST(Safetensors, CrossCheckWithIndependentPythonReader) {
  TempDir d;
  torch::manual_seed(3);
  std::vector<std::pair<std::string, torch::Tensor>> ts = {{"a", torch::randn({4, 3})},
                                             {"b", torch::randn({6}).to(torch::kBFloat16)},
                                             {"c", torch::randint(0, 9, {5}, torch::kInt64)},
                                             {"d", torch::randn({2, 2}).to(torch::kFloat16)}};
  mmb::save_safetensors(d.file("mmb.safetensors"), ts);
  auto py = mmb::Json::parse(run_command(kRef + " read " + d.file("mmb.safetensors")));
  for (const auto& [name, t] : ts) {
    ASSERT_TRUE(py.contains(name)) << name;
    EXPECT_EQ(py[name][0], mmb::torch_to_safetensors_dtype(t.scalar_type()));
    EXPECT_EQ(py[name][1].get<std::vector<int64_t>>(), t.sizes().vec()) << name;
    EXPECT_NEAR(py[name][2].get<double>(), t.to(torch::kFloat64).sum().item<double>(), 1e-9) << name;
  }
  // And the other direction: a file written by Python, read by mmb.
  run_command(kRef + " write " + d.file("py.safetensors"));
  mmb::SafetensorsFile f(d.file("py.safetensors"));
  EXPECT_EQ(f.metadata().at("writer"), "python");
  auto py_sums = mmb::Json::parse(run_command(kRef + " read " + d.file("py.safetensors")));
  ASSERT_EQ(f.entries().size(), py_sums.size());
  for (const auto& e : f.entries()) {
    const torch::Tensor t = f.tensor(e.name);
    EXPECT_EQ(py_sums[e.name][0], mmb::torch_to_safetensors_dtype(t.scalar_type())) << e.name;
    EXPECT_EQ(py_sums[e.name][1].get<std::vector<int64_t>>(), t.sizes().vec()) << e.name;
    EXPECT_NEAR(t.to(torch::kFloat64).sum().item<double>(), py_sums[e.name][2].get<double>(), 1e-9) << e.name;
  }
}
