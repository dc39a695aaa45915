// What the fuzz targets read their input through: front to back, everything past the end
// reading as zero.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#define CHECK(condition)                                                          \
  do {                                                                            \
    if (!(condition)) {                                                           \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #condition); \
      abort();                                                                    \
    }                                                                             \
  } while (0)

class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return at_ >= size_; }
  size_t remaining() const { return at_ < size_ ? size_ - at_ : 0; }
  uint8_t U8() { return at_ < size_ ? data_[at_++] : 0; }
  template <typename T>
  T Get() {
    T value{};
    size_t n = std::min(sizeof value, remaining());
    memcpy(&value, data_ + at_, n);
    at_ += n;
    return value;
  }
  const uint8_t* Take(size_t* n) {
    *n = std::min(*n, remaining());
    const uint8_t* p = data_ + at_;
    at_ += *n;
    return p;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
};
