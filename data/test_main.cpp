#define BOOST_TEST_MODULE troupe_data
#include <boost/test/unit_test.hpp>
