#pragma once
// Reads a PNG into RGBA pixels, for tests that look at screenshots: 8-bit RGB or RGBA, not interlaced
// (what headless Chromium writes). Throws std::runtime_error on anything else.

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include <zlib.h>

namespace troupe::testing {

struct rgba_image {
  uint32_t width = 0, height = 0;
  std::vector<uint8_t> pixels;  // [height, width, 4]

  const uint8_t* at(uint32_t x, uint32_t y) const { return &pixels[(static_cast<size_t>(y) * width + x) * 4]; }
};

inline rgba_image read_png(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes(std::istreambuf_iterator<char>(in), {});
  auto u32 = [&](size_t at) {
    return (uint32_t(uint8_t(bytes[at])) << 24) | (uint32_t(uint8_t(bytes[at + 1])) << 16) | (uint32_t(uint8_t(bytes[at + 2])) << 8) |
           uint32_t(uint8_t(bytes[at + 3]));
  };
  if (bytes.size() < 8 || bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) throw std::runtime_error(path.string() + " is not a PNG");

  rgba_image img;
  uint32_t channels = 0;
  std::string compressed;
  for (size_t at = 8; at + 12 <= bytes.size();) {
    const uint32_t length = u32(at);
    const std::string type = bytes.substr(at + 4, 4);
    if (at + 12 + length > bytes.size()) throw std::runtime_error(path.string() + ": a chunk runs past the end");
    const size_t data = at + 8;
    if (type == "IHDR") {
      img.width = u32(data);
      img.height = u32(data + 4);
      const uint8_t depth = uint8_t(bytes[data + 8]), color = uint8_t(bytes[data + 9]), interlace = uint8_t(bytes[data + 12]);
      if (depth != 8 || (color != 2 && color != 6) || interlace != 0)
        throw std::runtime_error(path.string() + ": only 8-bit RGB or RGBA without interlacing is read");
      channels = color == 6 ? 4 : 3;
    } else if (type == "IDAT") {
      compressed.append(bytes, data, length);
    } else if (type == "IEND") {
      break;
    }
    at += 12 + length;
  }
  if (channels == 0) throw std::runtime_error(path.string() + ": no IHDR");

  const size_t stride = size_t(img.width) * channels;
  std::vector<uint8_t> raw(img.height * (stride + 1));
  uLongf raw_size = raw.size();
  if (::uncompress(raw.data(), &raw_size, reinterpret_cast<const Bytef*>(compressed.data()), compressed.size()) != Z_OK ||
      raw_size != raw.size())
    throw std::runtime_error(path.string() + ": the image data does not inflate to its size");

  // Undo each row's filter (PNG spec, section 9), then widen to RGBA.
  std::vector<uint8_t> row(stride), previous(stride, 0);
  img.pixels.resize(size_t(img.width) * img.height * 4);
  for (uint32_t y = 0; y < img.height; ++y) {
    const uint8_t filter = raw[y * (stride + 1)];
    const uint8_t* line = &raw[y * (stride + 1) + 1];
    for (size_t i = 0; i < stride; ++i) {
      const int a = i >= channels ? row[i - channels] : 0, b = previous[i], c = i >= channels ? previous[i - channels] : 0;
      int predicted = 0;
      switch (filter) {
        case 0: predicted = 0; break;
        case 1: predicted = a; break;
        case 2: predicted = b; break;
        case 3: predicted = (a + b) / 2; break;
        case 4: {
          const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
          predicted = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default: throw std::runtime_error("an unknown PNG row filter");
      }
      row[i] = uint8_t(line[i] + predicted);
    }
    for (uint32_t x = 0; x < img.width; ++x)
      for (uint32_t k = 0; k < 4; ++k)
        img.pixels[(size_t(y) * img.width + x) * 4 + k] = k < channels ? row[x * channels + k] : 255;
    previous = row;
  }
  return img;
}

} // namespace troupe::testing
