// Decodes PNG files (paths on stdin, one per line) into one raw file of RGB bytes, in order:
// the fast image loader of scripts/grounding_probe.py (Debian's python3 has no PNG decoder).
//   g++ -O2 scripts/png2raw.cpp -o /tmp/mmb_png2raw && /tmp/mmb_png2raw OUT.raw < paths.txt
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>

#include <cstdio>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: png2raw OUT.raw < paths.txt\n");
    return 2;
  }
  FILE* f = std::fopen(argv[1], "wb");
  if (!f) {
    std::fprintf(stderr, "png2raw: cannot write %s\n", argv[1]);
    return 1;
  }
  std::string path;
  long n = 0;
  while (std::getline(std::cin, path)) {
    int w = 0, h = 0, c = 0;
    unsigned char* d = stbi_load(path.c_str(), &w, &h, &c, 3);
    if (!d) {
      std::fprintf(stderr, "png2raw: cannot decode %s: %s\n", path.c_str(), stbi_failure_reason());
      return 1;
    }
    std::fwrite(d, 1, size_t(w) * size_t(h) * 3, f);
    stbi_image_free(d);
    ++n;
  }
  std::fclose(f);
  std::fprintf(stderr, "png2raw: %ld images\n", n);
  return 0;
}
