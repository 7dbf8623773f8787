#define BOOST_TEST_MODULE troupe_programs
#include <boost/test/unit_test.hpp>
