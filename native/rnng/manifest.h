// model.txt: the model directory's manifest, one record a line ("key value value ..."), parsed
// without third-party libraries. The format is documented in nlpkit/tasks/semantic_parse/native.py.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace nlpkit {

using Record = std::vector<std::string>;  // the values after the key

struct Manifest {
  std::string path;                               // for error messages
  int format = 0;                                 // nlpkit-rnng 1 or 2
  std::map<std::string, std::vector<Record>> records;  // key -> its lines, in file order

  static Manifest read(const std::string& path);
  // the one line of `key` (an error if missing or repeated)
  const Record& one(const std::string& key) const;
  const std::vector<Record>& all(const std::string& key) const;  // empty when none
  long integer(const std::string& key) const;
  std::string text(const std::string& key) const;
  [[noreturn]] void fail(const std::string& what) const;
};

long to_long(const std::string& value, const std::string& where);
std::string read_binary(const std::string& path);  // the whole file; an error naming it if unreadable
uint32_t crc32(const std::string& data);           // zlib's CRC-32, what Python's zlib.crc32 computes

}  // namespace nlpkit
