// Scenes as JSON (one line of scenes.jsonl) and back; the reader of scenes.jsonl.
// Floats are written rounded (positions to 1/100 px, fractions to 1/1000) — the values the
// sampler and renderer store — so that write → read → write is byte-identical.
#include <cmath>

#include "mmb/error.h"
#include "mmb/jsonl.h"
#include "mmb/world.h"

namespace mmb::world {
namespace {

double rounded(float v, double scale) { return std::round(double(v) * scale) / scale; }

Json rgb_json(const std::array<uint8_t, 3>& c) { return Json::array({c[0], c[1], c[2]}); }

std::array<uint8_t, 3> rgb_from(const Json& j, const std::string& key, const std::string& ctx) {
  auto v = json_get<std::vector<int>>(j, key, ctx);
  if (v.size() != 3) fail(ctx, ": key '", key, "' must have 3 values, found ", v.size());
  std::array<uint8_t, 3> out{};
  for (int i = 0; i < 3; ++i) {
    if (v[i] < 0 || v[i] > 255) fail(ctx, ": key '", key, "' has a value outside [0, 255]");
    out[i] = uint8_t(v[i]);
  }
  return out;
}

}  // namespace

Json scene_to_json(const Scene& s) {
  Json objects = Json::array();
  for (size_t i = 0; i < s.objects.size(); ++i) {
    const Object& o = s.objects[i];
    objects.push_back(Json{{"id", i},
                           {"shape", shape_name(o.shape)},
                           {"color", color_name(o.color)},
                           {"size", size_name(o.size)},
                           {"cell", cell_name(o.cell)},
                           {"row", o.row()},
                           {"col", o.col()},
                           {"x", rounded(o.x, 100)},
                           {"y", rounded(o.y, 100)},
                           {"radius", rounded(o.radius, 100)},
                           {"rotation_deg", rounded(o.rotation_deg, 100)},
                           {"contrast", rounded(o.contrast, 100)},
                           {"rgb", rgb_json(o.rgb)},
                           {"visible_fraction", rounded(o.visible_fraction, 1000)},
                           {"occluded", o.occluded},
                           {"difficulty", rounded(o.difficulty, 1000)}});
  }
  Json occluders = Json::array();
  for (const Occluder& b : s.occluders)
    occluders.push_back(Json{{"object", b.object},
                             {"x0", rounded(b.x0, 100)},
                             {"y0", rounded(b.y0, 100)},
                             {"x1", rounded(b.x1, 100)},
                             {"y1", rounded(b.y1, 100)}});
  return Json{{"id", s.id},
              {"split", split_name(s.split)},
              {"index", s.index},
              {"image", s.image_path()},
              {"width", s.width},
              {"height", s.height},
              {"background", rgb_json(s.background)},
              {"gradient", rounded(s.gradient, 100)},
              {"noise_std", rounded(s.noise_std, 100)},
              {"objects", objects},
              {"occluders", occluders}};
}

Scene scene_from_json(const Json& j, const std::string& ctx) {
  Scene s;
  s.id = json_get<std::string>(j, "id", ctx);
  const std::string where = ctx + " (scene " + s.id + ")";
  s.split = parse_split(json_get<std::string>(j, "split", where), where);
  s.index = json_get<int64_t>(j, "index", where);
  s.width = json_get<int>(j, "width", where);
  s.height = json_get<int>(j, "height", where);
  if (s.width <= 0 || s.height <= 0) fail(where, ": width and height must be positive");
  s.background = rgb_from(j, "background", where);
  s.gradient = json_get<float>(j, "gradient", where);
  s.noise_std = json_get<float>(j, "noise_std", where);
  if (!j.contains("objects") || !j["objects"].is_array())
    fail(where, ": 'objects' must be an array");
  const Json& objects = j["objects"];
  for (size_t i = 0; i < objects.size(); ++i) {
    const Json& oj = objects[i];
    const std::string ow = where + " object " + std::to_string(i);
    Object o;
    o.shape = parse_shape(json_get<std::string>(oj, "shape", ow), ow);
    o.color = parse_color(json_get<std::string>(oj, "color", ow), ow);
    o.size = parse_size(json_get<std::string>(oj, "size", ow), ow);
    o.cell = parse_cell(json_get<std::string>(oj, "cell", ow), ow);
    o.x = json_get<float>(oj, "x", ow);
    o.y = json_get<float>(oj, "y", ow);
    o.radius = json_get<float>(oj, "radius", ow);
    o.rotation_deg = json_get_or<float>(oj, "rotation_deg", 0.0f, ow);
    o.contrast = json_get_or<float>(oj, "contrast", 1.0f, ow);
    o.rgb = oj.contains("rgb") ? rgb_from(oj, "rgb", ow) : color_rgb(o.color);
    o.visible_fraction = json_get_or<float>(oj, "visible_fraction", 1.0f, ow);
    o.occluded = json_get_or<bool>(oj, "occluded", false, ow);
    o.difficulty = json_get_or<float>(oj, "difficulty", 0.0f, ow);
    s.objects.push_back(o);
  }
  if (j.contains("occluders")) {
    const Json& occ = j["occluders"];
    if (!occ.is_array()) fail(where, ": 'occluders' must be an array");
    for (const Json& bj : occ) {
      Occluder b;
      b.object = json_get<int>(bj, "object", where + " occluder");
      if (b.object < 0 || b.object >= int(s.objects.size()))
        fail(where, ": occluder refers to object ", b.object, " but the scene has ",
             s.objects.size(), " objects");
      b.x0 = json_get<float>(bj, "x0", where);
      b.y0 = json_get<float>(bj, "y0", where);
      b.x1 = json_get<float>(bj, "x1", where);
      b.y1 = json_get<float>(bj, "y1", where);
      s.occluders.push_back(b);
    }
  }
  return s;
}

std::vector<Scene> read_scenes(const std::string& path) {
  JsonlReader reader(path);
  std::vector<Scene> scenes;
  Json j;
  while (reader.next(j)) scenes.push_back(scene_from_json(j, reader.where()));
  return scenes;
}

const Scene& find_scene(const std::vector<Scene>& scenes, const std::string& id) {
  for (const Scene& s : scenes)
    if (s.id == id) return s;
  std::string hint = scenes.empty() ? "" : " (ids look like '" + scenes.front().id + "')";
  fail("find_scene: no scene with id '", id, "' among ", scenes.size(), " scenes", hint);
}

}  // namespace mmb::world
