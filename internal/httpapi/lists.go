package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/jml-dev/jml/internal/identity"
)

// listQuery reads allow-listed query parameters; any other is an error, so
// a typo does not silently widen a listing.
func listQuery(r *http.Request, allowed ...string) (map[string]string, error) {
	out := map[string]string{}
	for k, v := range r.URL.Query() {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
			}
		}
		if !ok {
			return nil, identity.FieldError(k, "unknown query parameter (allowed: %s)", strings.Join(allowed, ", "))
		}
		if len(v) != 1 {
			return nil, identity.FieldError(k, "give it once")
		}
		out[k] = v[0]
	}
	return out, nil
}

func parseLimit(q map[string]string) (int, error) {
	if q["limit"] == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(q["limit"])
	if err != nil || n < 1 || n > 1000 {
		return 0, identity.FieldError("limit", "must be a whole number from 1 to 1000")
	}
	return n, nil
}
