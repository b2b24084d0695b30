// Renderer: every shape is a signed distance function d(p) in pixels (negative inside); a
// pixel's coverage is clamp(0.5 − d(centre), 0, 1), a one-pixel anti-aliasing ramp. Layers are
// composited in order (objects, then occluders), and the same coverages give each object's exact
// visible fraction: Σ cov_i · Π_{j above i} (1 − cov_j) / Σ cov_i.
#include <algorithm>
#include <cmath>
#include <vector>

#include "mmb/world.h"
#include "rng.h"

namespace mmb::world {
namespace {

struct Vec2 {
  float x, y;
};
inline Vec2 operator-(Vec2 a, Vec2 b) { return {a.x - b.x, a.y - b.y}; }
inline float dot(Vec2 a, Vec2 b) { return a.x * b.x + a.y * b.y; }
inline float length(Vec2 a) { return std::sqrt(dot(a, a)); }

float sd_circle(Vec2 p, float r) { return length(p) - r; }

float sd_box(Vec2 p, float hx, float hy) {
  float dx = std::fabs(p.x) - hx, dy = std::fabs(p.y) - hy;
  float ox = std::max(dx, 0.0f), oy = std::max(dy, 0.0f);
  return std::sqrt(ox * ox + oy * oy) + std::min(std::max(dx, dy), 0.0f);
}

// Exact SDF of a simple polygon (Inigo Quilez's winding formulation).
float sd_polygon(const std::vector<Vec2>& v, Vec2 p) {
  const int n = int(v.size());
  float d = dot(p - v[0], p - v[0]);
  float s = 1.0f;
  for (int i = 0, j = n - 1; i < n; j = i, ++i) {
    Vec2 e = v[j] - v[i];
    Vec2 w = p - v[i];
    float t = std::clamp(dot(w, e) / dot(e, e), 0.0f, 1.0f);
    Vec2 b{w.x - e.x * t, w.y - e.y * t};
    d = std::min(d, dot(b, b));
    bool c1 = p.y >= v[i].y, c2 = p.y < v[j].y, c3 = e.x * w.y > e.y * w.x;
    if ((c1 && c2 && c3) || (!c1 && !c2 && !c3)) s = -s;
  }
  return s * std::sqrt(d);
}

std::vector<Vec2> regular_polygon(int n, float radius, float start_angle) {
  std::vector<Vec2> v(n);
  for (int i = 0; i < n; ++i) {
    float a = start_angle + float(i) * 6.28318530718f / float(n);
    v[i] = {radius * std::cos(a), radius * std::sin(a)};
  }
  return v;
}

// One object prepared for rasterising: local frame and polygon vertices, if any.
struct Drawable {
  Shape shape;
  float cx, cy, r, cos_a, sin_a;
  std::vector<Vec2> poly;   // triangle, star, diamond, hexagon, heart's lower part
  int x0, y0, x1, y1;       // pixel bounding box (exclusive max)

  explicit Drawable(const Object& o, int w, int h)
      : shape(o.shape), cx(o.x), cy(o.y), r(o.radius) {
    float a = o.rotation_deg * 3.14159265359f / 180.0f;
    cos_a = std::cos(a);
    sin_a = std::sin(a);
    const float up = -1.5707963268f;  // y grows downwards: -90° points up
    switch (shape) {
      case Shape::kTriangle: {
        poly = regular_polygon(3, 1.2f * r, up);
        for (auto& p : poly) p.y += 0.1f * r;  // centre the visual mass
        break;
      }
      case Shape::kStar: {
        float outer = 1.15f * r, inner = 0.48f * outer;
        for (int i = 0; i < 10; ++i) {
          float rad = (i % 2 == 0) ? outer : inner;
          float ang = up + float(i) * 3.14159265359f / 5.0f;
          poly.push_back({rad * std::cos(ang), rad * std::sin(ang) + 0.05f * r});
        }
        break;
      }
      case Shape::kDiamond:
        poly = {{0, -1.15f * r}, {0.78f * r, 0}, {0, 1.15f * r}, {-0.78f * r, 0}};
        break;
      case Shape::kHexagon:
        poly = regular_polygon(6, 1.05f * r, 0.0f);
        break;
      case Shape::kHeart:
        // Overlaps the lobes well inside them, so the union has no faint seam.
        poly = {{-0.93f * r, -0.12f * r}, {0, -0.45f * r}, {0.93f * r, -0.12f * r}, {0, 0.98f * r}};
        break;
      default:
        break;
    }
    float ext = 1.25f * r + 1.0f;
    x0 = std::max(0, int(std::floor(cx - ext)));
    y0 = std::max(0, int(std::floor(cy - ext)));
    x1 = std::min(w, int(std::ceil(cx + ext)) + 1);
    y1 = std::min(h, int(std::ceil(cy + ext)) + 1);
  }

  // Signed distance in pixels from pixel centre (px, py) in image coordinates.
  float distance(float px, float py) const {
    float dx = px - cx, dy = py - cy;
    Vec2 p{cos_a * dx + sin_a * dy, -sin_a * dx + cos_a * dy};  // rotate into the local frame
    switch (shape) {
      case Shape::kCircle: return sd_circle(p, r);
      case Shape::kSquare: return sd_box(p, 0.82f * r, 0.82f * r);
      case Shape::kCross:
        return std::min(sd_box(p, 1.0f * r, 0.32f * r), sd_box(p, 0.32f * r, 1.0f * r));
      case Shape::kHeart: {
        float lobes = std::min(sd_circle(p - Vec2{-0.46f * r, -0.3f * r}, 0.52f * r),
                               sd_circle(p - Vec2{0.46f * r, -0.3f * r}, 0.52f * r));
        return std::min(lobes, sd_polygon(poly, p));
      }
      case Shape::kMoon:
        return std::max(sd_circle(p, r), -sd_circle(p - Vec2{0.5f * r, -0.3f * r}, 0.82f * r));
      case Shape::kRing: return std::fabs(sd_circle(p, 0.72f * r)) - 0.3f * r;
      default: return sd_polygon(poly, p);
    }
  }
  float coverage(int px, int py) const {
    if (px < x0 || px >= x1 || py < y0 || py >= y1) return 0.0f;
    return std::clamp(0.5f - distance(float(px) + 0.5f, float(py) + 0.5f), 0.0f, 1.0f);
  }
};

// The occluder's checkerboard: two greys in 3-pixel squares.
inline uint8_t occluder_grey(int x, int y) { return ((x / 3 + y / 3) % 2) ? 150 : 110; }

float difficulty_of(const Object& o, float noise_std) {
  if (o.occluded) return 1.0f;
  float size_term = o.size == Size::kSmall ? 1.0f : o.size == Size::kMedium ? 0.5f : 0.0f;
  float contrast_term = std::clamp((1.0f - o.contrast) / 0.5f, 0.0f, 1.0f);
  float cover_term = 1.0f - o.visible_fraction;
  float noise_term = std::min(noise_std / 16.0f, 1.0f);
  return std::clamp(0.35f * size_term + 0.25f * contrast_term + 0.3f * cover_term +
                        0.1f * noise_term,
                    0.0f, 1.0f);
}

}  // namespace

Image render_scene(Scene& scene, uint64_t seed) {
  const int w = scene.width, h = scene.height;
  Image img(w, h, 3);
  std::vector<Drawable> layers;
  layers.reserve(scene.objects.size());
  for (const Object& o : scene.objects) layers.emplace_back(o, w, h);
  const int n = int(layers.size());
  std::vector<double> area(n, 0.0), visible(n, 0.0);
  std::vector<float> cov(n);
  Rng rng = Rng::for_sample(seed, int(scene.split), scene.index, Stream::kRender);

  for (int y = 0; y < h; ++y) {
    float shade = scene.gradient * ((float(y) + 0.5f) / float(h) - 0.5f);
    for (int x = 0; x < w; ++x) {
      float c[3];
      for (int ch = 0; ch < 3; ++ch) c[ch] = float(scene.background[ch]) + shade;
      for (int i = 0; i < n; ++i) {
        cov[i] = layers[i].coverage(x, y);
        if (cov[i] <= 0.0f) continue;
        const auto& rgb = scene.objects[i].rgb;
        for (int ch = 0; ch < 3; ++ch) c[ch] += cov[i] * (float(rgb[ch]) - c[ch]);
      }
      float transmit = 1.0f;  // how much of the layers below shows through the occluders
      for (const Occluder& b : scene.occluders) {
        if (float(x) >= b.x0 && float(x) < b.x1 && float(y) >= b.y0 && float(y) < b.y1) {
          float g = occluder_grey(x, y);
          for (int ch = 0; ch < 3; ++ch) c[ch] = g;
          transmit = 0.0f;
        }
      }
      for (int i = n - 1; i >= 0; --i) {  // top to bottom
        if (cov[i] <= 0.0f) continue;
        area[i] += cov[i];
        visible[i] += cov[i] * transmit;
        transmit *= 1.0f - cov[i];
      }
      uint8_t* px = img.at(x, y);
      for (int ch = 0; ch < 3; ++ch) {
        float v = c[ch];
        if (scene.noise_std > 0) v += float(rng.normal()) * scene.noise_std;
        px[ch] = uint8_t(std::clamp(std::lround(v), 0L, 255L));
      }
    }
  }
  for (int i = 0; i < n; ++i) {
    Object& o = scene.objects[i];
    o.visible_fraction = area[i] > 0 ? float(visible[i] / area[i]) : 0.0f;
    // Stored rounded so that a scene read back from JSON compares equal.
    o.visible_fraction = std::round(o.visible_fraction * 1000.0f) / 1000.0f;
    o.difficulty = std::round(difficulty_of(o, scene.noise_std) * 1000.0f) / 1000.0f;
  }
  return img;
}

}  // namespace mmb::world
