// World statistics: what `mmb world stats` prints and generate_world writes to stats.json, so
// that a user sees the biases (Zipf frequencies, co-occurrence, typical colours) as measured.
#include "stats.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "mmb/jsonl.h"
#include "mmb/world_tasks.h"

namespace mmb::world {
namespace {

const char* const kPopeCategories[] = {"random", "popular", "adversarial"};

double ratio(int64_t a, int64_t b) { return b > 0 ? double(a) / double(b) : 0.0; }
double round4(double v) { return std::round(v * 10000.0) / 10000.0; }

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string pad(const std::string& s, size_t w) {
  return s.size() >= w ? s + " " : s + std::string(w - s.size(), ' ');
}

}  // namespace

void StatsAccumulator::add_scene(const Scene& s) {
  PerSplit& p = splits_[int(s.split)];
  p.scenes++;
  p.objects += int64_t(s.objects.size());
  p.occluded_scenes += s.has_occluder();
  p.objects_per_scene[std::min<size_t>(s.objects.size(), kNumCells)]++;
  std::array<bool, kNumShapes> in{};
  for (const Object& o : s.objects) {
    in[int(o.shape)] = true;
    p.shape_objects[int(o.shape)]++;
    p.shape_color[int(o.shape)][int(o.color)]++;
    p.color_objects[int(o.color)]++;
    p.size_objects[int(o.size)]++;
  }
  for (int a = 0; a < kNumShapes; ++a) {
    if (!in[a]) continue;
    p.shape_scenes[a]++;
    for (int b = 0; b < kNumShapes; ++b) p.both[a][b] += in[b];
  }
}

void StatsAccumulator::add_pope(Split split, int category, bool label) {
  splits_[int(split)].pope[category][label ? 1 : 0]++;
}

Json StatsAccumulator::to_json() const {
  Json out = Json::object();
  Json splits = Json::object();
  for (int si = 0; si < kNumSplits; ++si) {
    const PerSplit& p = splits_[si];
    if (p.scenes == 0) continue;
    Json j;
    j["scenes"] = p.scenes;
    j["objects"] = p.objects;
    j["occlusion_rate"] = round4(ratio(p.occluded_scenes, p.scenes));
    j["objects_per_scene"] = Json(std::vector<int64_t>(p.objects_per_scene.begin(),
                                                       p.objects_per_scene.end()));
    Json shape_share, scene_share, color_share, size_share, cooc, cgs, typical;
    for (int a = 0; a < kNumShapes; ++a) {
      const char* an = shape_name(Shape(a));
      shape_share[an] = round4(ratio(p.shape_objects[a], p.objects));
      scene_share[an] = round4(ratio(p.shape_scenes[a], p.scenes));
      Json row, colors;
      for (int b = 0; b < kNumShapes; ++b)
        if (b != a) row[shape_name(Shape(b))] = round4(ratio(p.both[a][b], p.shape_scenes[a]));
      cooc[an] = row;
      for (int c = 0; c < kNumColors; ++c)
        colors[color_name(Color(c))] = round4(ratio(p.shape_color[a][c], p.shape_objects[a]));
      cgs[an] = colors;
      if (kTypicalColor[a] != kNoColor)
        typical[an] = round4(ratio(p.shape_color[a][kTypicalColor[a]], p.shape_objects[a]));
    }
    for (int c = 0; c < kNumColors; ++c)
      color_share[color_name(Color(c))] = round4(ratio(p.color_objects[c], p.objects));
    for (int z = 0; z < kNumSizes; ++z)
      size_share[size_name(Size(z))] = round4(ratio(p.size_objects[z], p.objects));
    j["shape_share"] = shape_share;
    j["scenes_with_shape"] = scene_share;
    j["color_share"] = color_share;
    j["size_share"] = size_share;
    j["cooccurrence"] = cooc;
    j["color_given_shape"] = cgs;
    j["typical_color_rate"] = typical;
    Json pairs = Json::object();
    for (const ShapePair& pr : kCooccurringPairs)
      pairs[std::string(shape_name(pr.first)) + "->" + shape_name(pr.second)] =
          round4(ratio(p.both[int(pr.first)][int(pr.second)], p.shape_scenes[int(pr.first)]));
    j["pair_cooccurrence"] = pairs;
    Json pope = Json::object();
    for (int c = 0; c < 3; ++c)
      pope[kPopeCategories[c]] = Json{{"yes", p.pope[c][1]}, {"no", p.pope[c][0]}};
    j["pope"] = pope;
    splits[split_name(Split(si))] = j;
  }
  out["splits"] = splits;
  return out;
}

Json compute_stats(const std::vector<Scene>& scenes, const std::vector<Json>& pope) {
  StatsAccumulator acc;
  for (const Scene& s : scenes) acc.add_scene(s);
  for (const Json& q : pope) {
    std::string where = "compute_stats: POPE record";
    Split split = parse_split(json_get<std::string>(q, "split", where), where);
    std::string cat = json_get<std::string>(q, "category", where);
    int c = cat == "random" ? 0 : cat == "popular" ? 1 : cat == "adversarial" ? 2 : -1;
    if (c < 0) fail(where, ": unknown category '", cat, "'");
    acc.add_pope(split, c, json_get<std::string>(q, "label", where) == "yes");
  }
  return acc.to_json();
}

Json compute_stats(const std::string& dir) {
  std::vector<Scene> scenes = read_scenes(dir + "/scenes.jsonl");
  std::vector<Json> pope;
  for (int s = 0; s < kNumSplits; ++s) {
    std::string path = dir + "/" + split_name(Split(s)) + "/pope.jsonl";
    if (std::FILE* f = std::fopen(path.c_str(), "r")) {
      std::fclose(f);
      JsonlReader reader(path);
      Json j;
      while (reader.next(j)) {
        j["split"] = split_name(Split(s));
        pope.push_back(std::move(j));
      }
    }
  }
  return compute_stats(scenes, pope);
}

std::string format_stats(const Json& stats) {
  std::ostringstream os;
  const Json& splits = stats.at("splits");
  std::vector<std::string> names;  // in split order, not the JSON object's alphabetical one
  for (int si = 0; si < kNumSplits; ++si)
    if (splits.contains(split_name(Split(si)))) names.push_back(split_name(Split(si)));
  os << "split      scenes  objects  obj/scene  occluded\n";
  for (const std::string& name : names) {
    const Json& j = splits[name];
    double per = ratio(j["objects"].get<int64_t>(), j["scenes"].get<int64_t>());
    os << pad(name, 10) << pad(std::to_string(j["scenes"].get<int64_t>()), 8)
       << pad(std::to_string(j["objects"].get<int64_t>()), 9) << pad(fmt("%.2f", per), 11)
       << fmt("%.3f", j["occlusion_rate"].get<double>()) << "\n";
  }

  os << "\nshape share of objects (and share of scenes containing it)\n" << pad("shape", 10);
  for (auto& n : names) os << pad(n, 16);
  os << "\n";
  for (int a = 0; a < kNumShapes; ++a) {
    const char* an = shape_name(kShapeFrequencyOrder[a]);
    os << pad(an, 10);
    for (auto& n : names)
      os << pad(fmt("%.3f", splits[n]["shape_share"][an].get<double>()) + " (" +
                    fmt("%.2f", splits[n]["scenes_with_shape"][an].get<double>()) + ")",
                16);
    os << "\n";
  }
  os << "\ncolour share of objects\n" << pad("colour", 10);
  for (auto& n : names) os << pad(n, 9);
  os << "\n";
  for (int c = 0; c < kNumColors; ++c) {
    os << pad(color_name(Color(c)), 10);
    for (auto& n : names)
      os << pad(fmt("%.3f", splits[n]["color_share"][color_name(Color(c))].get<double>()), 9);
    os << "\n";
  }
  os << "\nco-occurring pairs: P(second present | first present)\n" << pad("pair", 18);
  for (auto& n : names) os << pad(n, 9);
  os << "\n";
  for (const ShapePair& pr : kCooccurringPairs) {
    std::string key = std::string(shape_name(pr.first)) + "->" + shape_name(pr.second);
    os << pad(key, 18);
    for (auto& n : names)
      os << pad(fmt("%.3f", splits[n]["pair_cooccurrence"][key].get<double>()), 9);
    os << "\n";
  }
  os << "\ntypical colour rate: P(colour = typical | shape)\n" << pad("shape", 18);
  for (auto& n : names) os << pad(n, 9);
  os << "\n";
  for (int a = 0; a < kNumShapes; ++a) {
    if (kTypicalColor[a] == kNoColor) continue;
    std::string key = std::string(shape_name(Shape(a))) + " (" +
                      color_name(Color(kTypicalColor[a])) + ")";
    os << pad(key, 18);
    for (auto& n : names)
      os << pad(fmt("%.3f", splits[n]["typical_color_rate"][shape_name(Shape(a))].get<double>()),
                9);
    os << "\n";
  }
  if (!names.empty()) {
    const std::string& first = splits.contains("train") ? std::string("train") : names.front();
    os << "\nco-occurrence table P(column | row), split " << first << "\n" << pad("", 9);
    for (int b = 0; b < kNumShapes; ++b) os << pad(std::string(shape_name(Shape(b))).substr(0, 6), 7);
    os << "\n";
    const Json& cooc = splits[first]["cooccurrence"];
    for (int a = 0; a < kNumShapes; ++a) {
      os << pad(shape_name(Shape(a)), 9);
      for (int b = 0; b < kNumShapes; ++b)
        os << pad(
            a == b ? std::string("  -") : fmt("%.2f", cooc[shape_name(Shape(a))][shape_name(Shape(b))].get<double>()),
            7);
      os << "\n";
    }
  }
  os << "\nPOPE questions (yes / no)\n" << pad("split", 10);
  for (const char* c : kPopeCategories) os << pad(c, 16);
  os << "\n";
  for (auto& n : names) {
    os << pad(n, 10);
    for (const char* c : kPopeCategories)
      os << pad(std::to_string(splits[n]["pope"][c]["yes"].get<int64_t>()) + " / " +
                    std::to_string(splits[n]["pope"][c]["no"].get<int64_t>()),
                16);
    os << "\n";
  }
  return os.str();
}

}  // namespace mmb::world
