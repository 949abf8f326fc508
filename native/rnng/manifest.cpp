#include "manifest.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace nlpkit {

long to_long(const std::string& value, const std::string& where) {
  try {
    size_t used = 0;
    long out = std::stol(value, &used);
    if (used == value.size()) return out;
  } catch (const std::exception&) {
  }
  throw std::runtime_error(where + ": " + value + " is not an integer");
}

std::string read_binary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot be read (missing? run the export again)");
  std::ostringstream data;
  data << in.rdbuf();
  return data.str();
}

uint32_t crc32(const std::string& data) {
  static uint32_t table[256];
  static bool ready = false;
  if (!ready) {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    ready = true;
  }
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char byte : data) crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

Manifest Manifest::read(const std::string& path) {
  Manifest m;
  m.path = path;
  std::istringstream in(read_binary(path));
  std::string line;
  bool ended = false;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line[0] == '#') continue;
    if (ended) m.fail("line " + std::to_string(number) + ": text after 'end'");
    std::istringstream fields(line);
    std::string key, value;
    fields >> key;
    Record values;
    while (fields >> value) values.push_back(value);
    if (number == 1) {  // format 1: featurizer=word only; format 2 adds the 'featurizer' line
      if (key == "format" && values == Record{"nlpkit-rnng", "1"}) m.format = 1;
      else if (key == "format" && values == Record{"nlpkit-rnng", "2"}) m.format = 2;
      else m.fail("not an nlpkit-rnng model manifest of format 1 or 2 (first line: '" + line + "')");
    }
    if (key == "end") ended = true;
    m.records[key].push_back(values);
  }
  if (!ended) m.fail("truncated: no 'end' line (the export was interrupted or the file is damaged)");
  return m;
}

const Record& Manifest::one(const std::string& key) const {
  auto found = records.find(key);
  if (found == records.end()) fail("no '" + key + "' line");
  if (found->second.size() != 1) fail("more than one '" + key + "' line");
  return found->second.front();
}

const std::vector<Record>& Manifest::all(const std::string& key) const {
  static const std::vector<Record> none;
  auto found = records.find(key);
  return found == records.end() ? none : found->second;
}

long Manifest::integer(const std::string& key) const {
  const Record& r = one(key);
  if (r.size() != 1) fail("'" + key + "' takes one value");
  return to_long(r[0], path + ": " + key);
}

std::string Manifest::text(const std::string& key) const {
  const Record& r = one(key);
  if (r.size() != 1) fail("'" + key + "' takes one value");
  return r[0];
}

void Manifest::fail(const std::string& what) const { throw std::runtime_error(path + ": " + what); }

std::unordered_map<std::string, long> read_vocabulary(const Manifest& m, const std::string& key,
                                                      const std::string& model_dir, const std::string& what) {
  const Record& record = m.one(key);  // FILE COUNT CRC32
  if (record.size() != 3) m.fail("'" + key + "' takes FILE COUNT CRC32");
  const std::string path = model_dir + "/" + record[0];
  const std::string data = read_binary(path);
  if (std::to_string(crc32(data)) != record[2])
    throw std::runtime_error(path + ": checksum mismatch (the file is damaged or not this model's)");
  std::unordered_map<std::string, long> entries;
  std::istringstream lines(data);
  std::string line;
  long id = 0;
  while (std::getline(lines, line))
    if (!entries.emplace(line, id++).second)
      throw std::runtime_error(path + ": line " + std::to_string(id) + " repeats an earlier entry");
  if (id != to_long(record[1], m.path + ": " + key))
    throw std::runtime_error(path + ": " + std::to_string(id) + " " + what + ", the manifest says " + record[1]);
  return entries;
}

}  // namespace nlpkit
