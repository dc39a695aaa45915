// A small replacement for libFuzzer's driver, for machines without clang: runs every file of
// the seed directories, then random mutations of them (byte flips, inserts, erases, splices,
// interesting values) for a number of seconds, and writes an input that crashes to crash-<n>
// before running it (so the crash leaves the input behind). No coverage feedback: weaker than
// libFuzzer, but it runs the same target under the same sanitizers.
// Usage: standalone <seconds> <corpus dir>...
#include <dirent.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

using Bytes = std::vector<uint8_t>;

static Bytes ReadFile(const std::string& path) {
  Bytes bytes;
  FILE* file = fopen(path.c_str(), "rb");
  if (file == nullptr) return bytes;
  uint8_t buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, file)) > 0) bytes.insert(bytes.end(), buffer, buffer + n);
  fclose(file);
  return bytes;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s <seconds> <corpus dir>...\n", argv[0]);
    return 2;
  }
  double seconds = atof(argv[1]);
  std::vector<Bytes> corpus;
  for (int i = 2; i < argc; i++) {
    DIR* dir = opendir(argv[i]);
    if (dir == nullptr) continue;
    while (dirent* entry = readdir(dir)) {
      if (entry->d_name[0] == '.') continue;
      corpus.push_back(ReadFile(std::string(argv[i]) + "/" + entry->d_name));
    }
    closedir(dir);
  }
  if (corpus.empty()) corpus.push_back(Bytes{0});
  uint64_t runs = 0;
  for (const Bytes& input : corpus) {
    LLVMFuzzerTestOneInput(input.data(), input.size());
    runs++;
  }
  std::mt19937_64 random(std::random_device{}());
  const uint64_t interesting[] = {0, 1, 7, 8, 0x7f, 0x80, 0xff, 0xffff, 0xffffffff, 4096, 4088,
                                  UINT64_MAX, UINT64_MAX - 7};
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    Bytes input = corpus[random() % corpus.size()];
    int mutations = 1 + random() % 8;
    for (int m = 0; m < mutations; m++) {
      size_t at = input.empty() ? 0 : random() % input.size();
      switch (random() % 6) {
        case 0:
          if (!input.empty()) input[at] ^= static_cast<uint8_t>(1u << (random() % 8));
          break;
        case 1:
          input.insert(input.begin() + at, static_cast<uint8_t>(random()));
          break;
        case 2:
          if (!input.empty()) input.erase(input.begin() + at, input.begin() + std::min(input.size(), at + 1 + random() % 16));
          break;
        case 3: {
          const Bytes& other = corpus[random() % corpus.size()];
          if (other.empty()) break;
          size_t from = random() % other.size();
          size_t n = std::min<size_t>(other.size() - from, 1 + random() % 64);
          input.insert(input.begin() + at, other.begin() + from, other.begin() + from + n);
          break;
        }
        case 4: {
          uint64_t value = interesting[random() % (sizeof interesting / sizeof *interesting)];
          size_t width = size_t{1} << (random() % 4);
          for (size_t b = 0; b < width && at + b < input.size(); b++) input[at + b] = static_cast<uint8_t>(value >> (8 * b));
          break;
        }
        case 5:
          if (!input.empty()) input[at] = static_cast<uint8_t>(random());
          break;
      }
    }
    // Keep the input where a crash can find it.
    FILE* file = fopen("crash-candidate", "wb");
    if (file != nullptr) {
      fwrite(input.data(), 1, input.size(), file);
      fclose(file);
    }
    LLVMFuzzerTestOneInput(input.data(), input.size());
    runs++;
    if (random() % 64 == 0 && corpus.size() < 4096) corpus.push_back(input);
    if ((runs & 1023) == 0) {
      double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (elapsed >= seconds) break;
    }
  }
  remove("crash-candidate");
  printf("standalone driver: %llu runs in %.0f s, no crash\n", static_cast<unsigned long long>(runs), seconds);
  return 0;
}
