// Readers for aenet species files.  Both formats hold the same fields in the same order, so one
// parser (parse_file) reads them through the Source interface: TextSource consumes a .nn.ascii file
// the way Fortran list-directed input does (as aenet_core/export/nn_ascii_file.py does), RecordSource
// reads gfortran unformatted sequential records (little-endian, 4-byte length markers).
#include "aenet_file.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>

namespace AenetCore {
namespace {

const int N_SFPARAM = 4;       // Chebyshev: radial cutoff, radial order, angular cutoff, angular order
const int N_ACTIVATIONS = 5;   // 0 linear, 1 tanh, 2 sigmoid, 3 mtanh, 4 twist

template <typename T> std::string join(const std::vector<T> &values)
{
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + std::to_string(values[i]);
  return out + "]";
}

// Where each layer's incoming weights start (the last entry is Wsize), and each layer's node values.
std::vector<long long> weight_offsets(const std::vector<int> &nnodes)
{
  std::vector<long long> offsets{0};
  for (size_t l = 0; l + 1 < nnodes.size(); ++l)
    offsets.push_back(offsets.back() + (long long) (nnodes[l] + 1) * nnodes[l + 1]);
  return offsets;
}

std::vector<long long> value_offsets(const std::vector<int> &nnodes)
{
  std::vector<long long> offsets{0};
  for (size_t l = 0; l + 1 < nnodes.size(); ++l) offsets.push_back(offsets.back() + nnodes[l] + 1);
  return offsets;
}

// What parse_file needs from a format; every method throws FileError naming the place in the file.
class Source {
 public:
  virtual ~Source() = default;
  std::string section = "network";
  virtual FileError error(const std::string &field, const std::string &message) const = 0;
  virtual std::string text(const std::string &field) = 0;
  virtual std::vector<std::string> words(const std::string &field, int count) = 0;
  virtual std::vector<long long> ints(const std::string &field, int count) = 0;
  virtual std::vector<double> floats(const std::string &field, int count) = 0;
  virtual bool logical(const std::string &field) = 0;
  // sfenv (nenv * nsf or 2 * nsf integers, unused here), then neval.
  virtual void sfenv_and_neval(int nenv, int nsf) = 0;
  virtual void expect_end() = 0;

  long long one_int(const std::string &field) { return ints(field, 1)[0]; }
  double one_float(const std::string &field) { return floats(field, 1)[0]; }
  int count(const std::string &field)
  {
    long long value = one_int(field);
    if (value < 1 || value > 1000000000)
      throw error(field, "must be at least 1; got " + std::to_string(value));
    return (int) value;
  }
  std::string word(const std::string &field)
  {
    std::string line = text(field);
    std::istringstream tokens(line);
    std::string first, second;
    if (!(tokens >> first) || (tokens >> second))
      throw error(field, "expected one word, got '" + line + "'");
    return first;
  }
  void check(const std::string &field, long long found, long long expected, const std::string &meaning)
  {
    if (found != expected)
      throw error(field, "found " + std::to_string(found) + ", expected " + std::to_string(expected) + " (" +
                             meaning + ")");
  }
};

// ---------------------------------------------------------------------------------------- text

bool is_space(char c)
{
  return std::isspace((unsigned char) c) != 0;
}

std::vector<std::string> split(const std::string &line)
{
  std::vector<std::string> tokens;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_space(line[i])) ++i;
    size_t start = i;
    while (i < line.size() && !is_space(line[i])) ++i;
    if (i > start) tokens.push_back(line.substr(start, i - start));
  }
  return tokens;
}

std::string strip(const std::string &line)
{
  size_t start = 0, end = line.size();
  while (start < end && is_space(line[start])) ++start;
  while (end > start && is_space(line[end - 1])) --end;
  return line.substr(start, end - start);
}

bool is_digits(const std::string &s, size_t from, size_t to)
{
  if (from >= to) return false;
  for (size_t i = from; i < to; ++i)
    if (!std::isdigit((unsigned char) s[i])) return false;
  return true;
}

bool parse_int(const std::string &token, long long &value)
{
  size_t start = (token[0] == '+' || token[0] == '-') ? 1 : 0;
  if (!is_digits(token, start, token.size())) return false;
  errno = 0;
  value = std::strtoll(token.c_str(), nullptr, 10);
  return errno == 0;
}

// A plain decimal number: [+-] digits [. digits] [e [+-] digits] (the integer or fraction part may be empty).
bool is_decimal(const std::string &s)
{
  size_t i = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
  size_t digits = 0;
  while (i < s.size() && std::isdigit((unsigned char) s[i])) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && std::isdigit((unsigned char) s[i])) ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    size_t start = ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) start = ++i;
    return is_digits(s, start, s.size());
  }
  return i == s.size();
}

// Fortran real: D exponents, and the bare three-digit exponent Fortran writes without its letter (1.5-100).
bool parse_float(std::string token, double &value)
{
  if (token.find_first_of("eEdD") == std::string::npos) {
    size_t sign = token.find_last_of("+-");
    if (sign != std::string::npos && sign > 0 && is_digits(token, sign + 1, token.size()) &&
        (std::isdigit((unsigned char) token[sign - 1]) || token[sign - 1] == '.'))
      token.insert(sign, "E");
  }
  std::replace(token.begin(), token.end(), 'D', 'E');
  std::replace(token.begin(), token.end(), 'd', 'e');
  if (!is_decimal(token)) return false;
  value = std::strtod(token.c_str(), nullptr);
  return std::isfinite(value);
}

class TextSource : public Source {
 public:
  TextSource(const std::string &path, const std::string &content) : path(path)
  {
    std::string line;
    for (size_t i = 0; i < content.size(); ++i) {
      char c = content[i];
      if (c == '\n' || c == '\r') {
        lines.push_back(line);
        line.clear();
        if (c == '\r' && i + 1 < content.size() && content[i + 1] == '\n') ++i;
      } else {
        line += c;
      }
    }
    if (!line.empty()) lines.push_back(line);
  }

  FileError error(const std::string &field, const std::string &message) const override
  {
    return FileError(path + ", line " + std::to_string(std::max<size_t>(row, 1)) + ": " + section + " section, " +
                     field + ": " + message);
  }

  std::string text(const std::string &field) override
  {
    if (row >= lines.size()) throw error(field, "missing: the file ends here");
    return strip(lines[row++]);
  }

  // count tokens from the following lines; the last line used must hold no more.
  std::vector<std::string> words(const std::string &field, int count) override
  {
    std::vector<std::string> found;
    size_t first_line = row + 1;
    while ((int) found.size() < count) {
      if (row >= lines.size())
        throw error(field, "expected " + std::to_string(count) + " values, the file ends after " +
                               std::to_string(found.size()));
      for (auto &token : split(lines[row])) found.push_back(token);
      ++row;
    }
    if ((int) found.size() > count)
      throw error(field, "expected " + std::to_string(count) + " values, lines " + std::to_string(first_line) +
                             "-" + std::to_string(row) + " hold " + std::to_string(found.size()));
    return found;
  }

  std::vector<long long> ints(const std::string &field, int count) override
  {
    std::vector<long long> values;
    for (auto &token : words(field, count)) {
      long long value;
      if (!parse_int(token, value)) throw error(field, "'" + token + "' is not an integer");
      values.push_back(value);
    }
    return values;
  }

  std::vector<double> floats(const std::string &field, int count) override
  {
    std::vector<double> values;
    for (auto &token : words(field, count)) {
      double value;
      if (!parse_float(token, value)) throw error(field, "'" + token + "' is not a finite number");
      values.push_back(value);
    }
    return values;
  }

  bool logical(const std::string &field) override
  {
    std::string token = words(field, 1)[0];
    size_t start = token.find_first_not_of('.');
    char letter = start == std::string::npos ? ' ' : (char) std::toupper((unsigned char) token[start]);
    if (letter != 'T' && letter != 'F')
      throw error(field, "'" + token + "' is not a logical (T/F/True/False)");
    return letter == 'T';
  }

  // The integers of all following integer-only lines, up to the first line with another token.
  void sfenv_and_neval(int nenv, int nsf) override
  {
    long long n_values = 0;
    while (row < lines.size()) {
      auto tokens = split(lines[row]);
      long long value;
      if (!std::all_of(tokens.begin(), tokens.end(), [&](const std::string &t) { return parse_int(t, value); }))
        break;
      n_values += (long long) tokens.size();
      ++row;
    }
    long long a = (long long) nenv * nsf, b = 2LL * nsf;
    if (n_values - 1 != a && n_values - 1 != b)
      throw error("sfenv and neval", "expected " + std::to_string(std::min(a, b) + 1) +
                                         (a == b ? "" : " or " + std::to_string(std::max(a, b) + 1)) +
                                         " integers (sfenv, then neval) before the first float line; found " +
                                         std::to_string(n_values));
  }

  void expect_end() override
  {
    for (size_t i = row; i < lines.size(); ++i)
      if (!strip(lines[i]).empty())
        throw FileError(path + ", line " + std::to_string(i + 1) +
                        ": unexpected content after the training-set info: '" + lines[i].substr(0, 60) + "'");
  }

 private:
  std::string path;
  std::vector<std::string> lines;
  size_t row = 0;    // lines consumed so far
};

// -------------------------------------------------------------------------------------- binary

int32_t little_endian_int(const std::string &bytes, size_t at)
{
  uint32_t value = 0;
  for (int b = 3; b >= 0; --b) value = (value << 8) | (unsigned char) bytes[at + b];
  return (int32_t) value;
}

double little_endian_double(const std::string &bytes, size_t at)
{
  uint64_t bits = 0;
  for (int b = 7; b >= 0; --b) bits = (bits << 8) | (unsigned char) bytes[at + b];
  double value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// The first record's length marker is repeated after it: a gfortran unformatted file.
bool looks_like_records(const std::string &bytes)
{
  if (bytes.size() < 8) return false;
  int32_t length = little_endian_int(bytes, 0);
  return length > 0 && (size_t) length + 8 <= bytes.size() && little_endian_int(bytes, 4 + length) == length;
}

class RecordSource : public Source {
 public:
  RecordSource(const std::string &path, const std::string &bytes) : path(path), bytes(bytes) {}

  FileError error(const std::string &field, const std::string &message) const override
  {
    return FileError(path + ", record " + std::to_string(records) + ": " + section + " section, " + field +
                     ": " + message);
  }

  std::string text(const std::string &field) override { return strip(record(field)); }

  // count fixed-length names in one record (Fortran character(len=*) arrays).
  std::vector<std::string> words(const std::string &field, int count) override
  {
    std::string data = record(field);
    if (data.size() % count)
      throw error(field, std::to_string(data.size()) + " bytes do not hold " + std::to_string(count) + " names");
    std::vector<std::string> names;
    size_t length = data.size() / count;
    for (int i = 0; i < count; ++i) {
      std::string name = strip(data.substr(i * length, length));
      name.erase(std::find(name.begin(), name.end(), '\0'), name.end());
      if (name.empty() || split(name).size() != 1) throw error(field, "'" + name + "' is not a name");
      names.push_back(name);
    }
    return names;
  }

  std::vector<long long> ints(const std::string &field, int count) override
  {
    std::string data = sized_record(field, count, 4, "4-byte integers");
    std::vector<long long> values(count);
    for (int i = 0; i < count; ++i) values[i] = little_endian_int(data, 4 * i);
    return values;
  }

  std::vector<double> floats(const std::string &field, int count) override
  {
    std::string data = sized_record(field, count, 8, "8-byte reals");
    std::vector<double> values(count);
    for (int i = 0; i < count; ++i) {
      values[i] = little_endian_double(data, 8 * i);
      if (!std::isfinite(values[i])) throw error(field, "value " + std::to_string(i + 1) + " is not finite");
    }
    return values;
  }

  bool logical(const std::string &field) override { return ints(field, 1)[0] != 0; }

  void sfenv_and_neval(int nenv, int nsf) override
  {
    std::string data = record("sfenv");
    size_t a = 4 * (size_t) nenv * nsf, b = 8 * (size_t) nsf;
    if (data.size() != a && data.size() != b)
      throw error("sfenv", std::to_string(data.size()) + " bytes; expected " + std::to_string(a) + " or " +
                               std::to_string(b) + " (nenv * nsf or 2 * nsf 4-byte integers)");
    one_int("neval");
  }

  void expect_end() override
  {
    if (position != bytes.size())
      throw FileError(path + ": " + std::to_string(bytes.size() - position) +
                      " unexpected bytes after the training-set info (record " + std::to_string(records + 1) +
                      ")");
  }

 private:
  std::string path;
  const std::string &bytes;
  size_t position = 0;
  int records = 0;    // records read so far

  std::string record(const std::string &field)
  {
    ++records;
    if (position + 4 > bytes.size()) throw error(field, "missing: the file ends here");
    int32_t length = little_endian_int(bytes, position);
    if (length < 0 || position + 8 + (size_t) length > bytes.size() ||
        little_endian_int(bytes, position + 4 + length) != length)
      throw error(field, "damaged record (its length markers do not match)");
    std::string data = bytes.substr(position + 4, length);
    position += 8 + (size_t) length;
    return data;
  }

  std::string sized_record(const std::string &field, int count, int size, const std::string &kind)
  {
    std::string data = record(field);
    if (data.size() != (size_t) count * size)
      throw error(field, std::to_string(data.size()) + " bytes; expected " + std::to_string(count) + " " + kind);
    return data;
  }
};

// ------------------------------------------------------------------------------------ parsing

std::vector<int> as_ints(const std::vector<long long> &values)
{
  return std::vector<int>(values.begin(), values.end());
}

void parse_network(Source &s, SpeciesFile &f)
{
  s.section = "network";
  int nlayers = s.count("nlayers");
  long long nnodes_max = s.one_int("nnodes_max"), wsize = s.one_int("Wsize"), nvalues = s.one_int("nvalues");
  auto nnodes = s.ints("nnodes", nlayers);
  for (long long n : nnodes)
    if (n < 1 || n > 1000000)
      throw s.error("nnodes", "every layer needs at least one node; got " + join(as_ints(nnodes)));
  f.nnodes = as_ints(nnodes);
  auto iw = weight_offsets(f.nnodes), iv = value_offsets(f.nnodes);
  std::string layers = " for nnodes " + join(f.nnodes);
  s.check("nnodes_max", nnodes_max, *std::max_element(f.nnodes.begin(), f.nnodes.end()),
          "the largest of nnodes " + join(f.nnodes));
  s.check("Wsize", wsize, iw.back(), "sum of (n_l + 1) n_(l+1)" + layers);
  s.check("nvalues", nvalues, iv.back() + f.nnodes.back(), "sum of n_l + 1 plus the output nodes" + layers);
  f.activations = as_ints(s.ints("f_a (activation codes)", nlayers - 1));
  for (int code : f.activations)
    if (code < 0 || code >= N_ACTIVATIONS)
      throw s.error("f_a (activation codes)", "unknown code " + std::to_string(code) +
                                                  "; known: 0 linear, 1 tanh, 2 sigmoid, 3 mtanh, 4 twist");
  auto found_iw = s.ints("iw", nlayers);
  if (found_iw != iw) throw s.error("iw", "found " + join(found_iw) + ", expected " + join(iw) + " (weight offsets" + layers + ")");
  auto found_iv = s.ints("iv", nlayers);
  if (found_iv != iv) throw s.error("iv", "found " + join(found_iv) + ", expected " + join(iv) + " (value offsets" + layers + ")");
  f.weights = s.floats("W", (int) wsize);
}

void parse_setup(Source &s, SpeciesFile &f)
{
  s.section = "setup";
  s.text("description");
  f.species = s.word("atom type");
  int nenv = s.count("nenv");
  f.env_species = s.words("environment species", nenv);
  f.rc_min = s.one_float("Rc_min");
  f.rc_max = s.one_float("Rc_max");
  std::string basis = s.text("basis type"), lower = basis;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower != "chebyshev") throw s.error("basis type", "only the Chebyshev basis is supported; got '" + basis + "'");
  f.nsf = s.count("nsf");
  s.check("nsf", f.nsf, f.nnodes[0], "the input layer size nnodes[1]");
  s.check("nsfparam", s.count("nsfparam"), N_SFPARAM, "the Chebyshev basis has 4 parameters");
  s.ints("sf", f.nsf);
  f.sfparam = s.floats("sfparam", f.nsf * N_SFPARAM);
  s.sfenv_and_neval(nenv, f.nsf);
  s.floats("sfval_min", f.nsf);
  s.floats("sfval_max", f.nsf);
  f.sf_avg = s.floats("sfval_avg", f.nsf);
  f.sf_cov = s.floats("sfval_cov", f.nsf);
}

void parse_trainset(Source &s, SpeciesFile &f)
{
  s.section = "training-set info";
  s.text("training set file name");
  s.logical("normalized");
  f.scale = s.one_float("scale");
  f.shift = s.one_float("shift");
  int ntypes = s.count("nTypes");
  f.trainset_species = s.words("species", ntypes);
  f.atomic_energies = s.floats("E_atom", ntypes);
  s.one_int("nAtomsTot");
  s.one_int("nStrucs");
  s.floats("E_min E_max E_av", 3);
  s.expect_end();
}

bool ends_with(const std::string &s, const std::string &suffix)
{
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}    // namespace

std::string read_file(const std::string &path)
{
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError("cannot open potential file " + path + ": " + std::strerror(errno));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw FileError("cannot read potential file " + path);
  return bytes;
}

SpeciesFile parse_species_file(const std::string &path, const std::string &bytes)
{
  std::unique_ptr<Source> source;
  if (!ends_with(path, ".ascii") && looks_like_records(bytes))
    source.reset(new RecordSource(path, bytes));
  else
    source.reset(new TextSource(path, bytes));
  SpeciesFile f;
  f.path = path;
  parse_network(*source, f);
  parse_setup(*source, f);
  parse_trainset(*source, f);
  return f;
}

}    // namespace AenetCore
