#define BOOST_TEST_MODULE troupe_modelio
#include <boost/test/unit_test.hpp>
