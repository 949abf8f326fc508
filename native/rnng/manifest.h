// model.txt: the model directory's manifest, one record a line ("key value value ..."), parsed
// without third-party libraries. The format is documented in nlpkit/tasks/semantic_parse/native.py.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
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
// The vocabulary file the record `key` names (FILE COUNT CRC32): one entry a line, in id order, checked
// against the CRC and the count (`what`: the entries' name in the error, e.g. "words"); entries are unique.
std::unordered_map<std::string, long> read_vocabulary(const Manifest& m, const std::string& key,
                                                      const std::string& model_dir, const std::string& what);

}  // namespace nlpkit
