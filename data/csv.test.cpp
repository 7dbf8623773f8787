#include "data/dataset.hpp"
#include "data/test_files.hpp"

#include <boost/test/unit_test.hpp>

namespace td = troupe::data;
using namespace troupe::data::testing;

namespace {

std::string error_of(const std::vector<std::string>& files,
                     const std::string& target, std::int64_t classes) {
  try {
    td::read_csv(files, target, classes);
  } catch (const td::data_error& e) {
    return e.what();
  }
  return "(no error)";
}

} // namespace

BOOST_AUTO_TEST_SUITE(csv)

BOOST_AUTO_TEST_CASE(header_detected_and_target_by_name) {
  temp_dir dir;
  write_text(dir.file("a.csv"), "x1, y ,x2\n1,10,2\n3,20,4\n\n");
  auto ds = td::read_csv({dir.file("a.csv")}, "y", 0);
  BOOST_TEST(ds.samples == 2);
  BOOST_TEST(ds.features == 2);
  BOOST_TEST(ds.classes == 0);
  BOOST_TEST(ds.x.to_vector() == (std::vector<float>{1, 2, 3, 4}));
  BOOST_TEST(ds.y.to_vector() == (std::vector<float>{10, 20}));
  BOOST_TEST(ds.y.rank() == 2u);
}

BOOST_AUTO_TEST_CASE(no_header_default_last_and_index) {
  temp_dir dir;
  write_text(dir.file("a.csv"), "1,2,0\n3.5,-4e1,1\n");
  auto ds = td::read_csv({dir.file("a.csv")}, "", 2);
  BOOST_TEST(ds.samples == 2);
  BOOST_TEST(ds.classes == 2);
  BOOST_TEST(ds.x.to_vector() == (std::vector<float>{1, 2, 3.5f, -40}));
  BOOST_TEST(ds.y.to_vector() == (std::vector<float>{0, 1}));
  auto by_index = td::read_csv({dir.file("a.csv")}, "0", 0);
  BOOST_TEST(by_index.y.to_vector() == (std::vector<float>{1, 3.5f}));
}

BOOST_AUTO_TEST_CASE(several_files_concatenate) {
  temp_dir dir;
  write_text(dir.file("a.csv"), "a,b\n1,2\n");
  write_text(dir.file("b.csv"), "a,b\n3,4\n");
  auto ds = td::read_csv({dir.file("a.csv"), dir.file("b.csv")}, "", 0);
  BOOST_TEST(ds.samples == 2);
  BOOST_TEST(ds.y.to_vector() == (std::vector<float>{2, 4}));
}

BOOST_AUTO_TEST_CASE(non_numeric_cell_names_line_and_column) {
  temp_dir dir;
  write_text(dir.file("a.csv"), "a,b,c\n1,2,3\n4,abc,6\n");
  auto msg = error_of({dir.file("a.csv")}, "", 0);
  BOOST_TEST(msg.find("a.csv:3:3: cell \"abc\" is not a finite number") !=
                 std::string::npos,
             msg);
}

BOOST_AUTO_TEST_CASE(ragged_rows_and_bad_target) {
  temp_dir dir;
  write_text(dir.file("a.csv"), "1,2,3\n4,5\n");
  BOOST_TEST(error_of({dir.file("a.csv")}, "", 0)
                 .find("a.csv:2: 2 columns, expected 3") != std::string::npos);
  write_text(dir.file("b.csv"), "a,b\n1,2\n");
  BOOST_TEST(
      error_of({dir.file("b.csv")}, "zz", 0).find("data.target = \"zz\"") !=
      std::string::npos);
  BOOST_TEST(error_of({dir.file("b.csv")}, "7", 0).find("out of range") !=
             std::string::npos);
  write_text(dir.file("c.csv"), "1,2.5\n");
  BOOST_TEST(
      error_of({dir.file("c.csv")}, "", 3).find("not an integer in [0, 3)") !=
      std::string::npos);
  // Another separator: named, not "too few columns".
  write_text(dir.file("d.csv"), "a;b;c\n1;2;3\n");
  BOOST_TEST(error_of({dir.file("d.csv")}, "", 0) ==
             dir.file("d.csv") +
                 ":1: one column: troupe reads comma-separated values, and "
                 "this line is separated by semicolons; convert the file to "
                 "commas");
  write_text(dir.file("e.csv"), "1\t2\t3\n");
  BOOST_TEST(error_of({dir.file("e.csv")}, "", 0).find("separated by tabs") !=
             std::string::npos);
  BOOST_TEST(error_of({dir.file("missing.csv")}, "", 0)
                 .find("missing.csv: cannot open") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(text_class_labels_map_in_sorted_order) {
  temp_dir dir;
  write_text(
      dir.file("train.csv"),
      "a,b,kind\n1,2,setosa\n3,4,virginica\n5,6,versicolor\n7,8,setosa\n");
  auto ds = td::read_csv({dir.file("train.csv")}, "kind", -1);
  BOOST_TEST(ds.classes == 3);
  BOOST_TEST(ds.labels == (std::vector<std::string>{"setosa", "versicolor",
                                                    "virginica"}),
             boost::test_tools::per_element());
  BOOST_TEST(ds.y.to_vector() == (std::vector<float>{0, 2, 1, 0}),
             boost::test_tools::per_element());
  BOOST_TEST(ds.features == 2);

  // A test set maps by the training set's names, whatever it holds.
  write_text(dir.file("test.csv"), "a,b,kind\n1,1,virginica\n2,2,virginica\n");
  auto t = td::read_csv({dir.file("test.csv")}, "kind", -1, ds.labels);
  BOOST_TEST(t.y.to_vector() == (std::vector<float>{2, 2}),
             boost::test_tools::per_element());
  BOOST_TEST(t.labels == ds.labels, boost::test_tools::per_element());
  // ... and names one it does not know, with file, line and column.
  write_text(dir.file("odd.csv"), "a,b,kind\n1,1,setosa\n2,2,iris\n");
  try {
    td::read_csv({dir.file("odd.csv")}, "kind", -1, ds.labels);
    BOOST_ERROR("an unknown label was accepted");
  } catch (const td::data_error& e) {
    BOOST_TEST(std::string(e.what()).find(
                   "odd.csv:3:5: class label \"iris\" is not one of the "
                   "training data's 3 labels") != std::string::npos,
               e.what());
  }
  // Numbers among names are names too.
  write_text(dir.file("mixed.csv"), "1,2,7\n3,4,b\n5,6,a\n");
  auto mixed = td::read_csv({dir.file("mixed.csv")}, "", -1);
  BOOST_TEST(mixed.labels == (std::vector<std::string>{"7", "a", "b"}),
             boost::test_tools::per_element());
  BOOST_TEST(mixed.y.to_vector() == (std::vector<float>{0, 2, 1}),
             boost::test_tools::per_element());
  // Without a header, a first row with a class name is data.
  write_text(dir.file("bare.csv"), "1,2,cat\n3,4,dog\n");
  auto bare = td::read_csv({dir.file("bare.csv")}, "", -1);
  BOOST_TEST(bare.samples == 2);
  BOOST_TEST(bare.labels == (std::vector<std::string>{"cat", "dog"}),
             boost::test_tools::per_element());
  // More names than data.classes, and names where a number is needed.
  BOOST_TEST(error_of({dir.file("train.csv")}, "kind", 2)
                 .find("3 distinct class labels but data.classes = 2") !=
             std::string::npos);
  BOOST_TEST(
      error_of({dir.file("train.csv")}, "kind", 0)
          .find("train.csv:2:5: target \"setosa\" is not a finite number") !=
      std::string::npos);
}

BOOST_AUTO_TEST_CASE(features_only_with_a_column_left_out) {
  temp_dir dir;
  write_text(dir.file("p.csv"), "a,y,b\n1,cat,2\n3,dog,4\n");
  auto ds = td::read_csv_features({dir.file("p.csv")}, "y");
  BOOST_TEST(ds.features == 2);
  BOOST_TEST(ds.targets == 0);
  BOOST_TEST(ds.x.to_vector() == (std::vector<float>{1, 2, 3, 4}),
             boost::test_tools::per_element());
  write_text(dir.file("f.csv"), "1,2\n3,4\n");
  BOOST_TEST(td::read_csv_features({dir.file("f.csv")}).features == 2);
}

BOOST_AUTO_TEST_CASE(a_bom_is_stripped_and_endless_lines_are_refused) {
  temp_dir dir;
  // A byte-order mark before a first data row: the row is kept.
  write_text(dir.file("bom.csv"), "\xEF\xBB\xBF"
                                  "1,2,0\n3,4,1\n");
  auto ds = td::read_csv({dir.file("bom.csv")}, "", 2);
  BOOST_TEST(ds.samples == 2);
  BOOST_TEST(ds.x.to_vector() == (std::vector<float>{1, 2, 3, 4}),
             boost::test_tools::per_element());
  // ... and before a header.
  write_text(dir.file("bomh.csv"), "\xEF\xBB\xBF"
                                   "a,y\n1,2\n");
  BOOST_TEST(td::read_csv({dir.file("bomh.csv")}, "y", 0).samples == 1);
  // No newline for more than a MiB (a binary or device file).
  BOOST_TEST(error_of({"/dev/zero"}, "", 0)
                 .find("/dev/zero:1: a line longer than 1048576 bytes") !=
             std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
