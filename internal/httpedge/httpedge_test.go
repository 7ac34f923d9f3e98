package httpedge

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jml-dev/jml/internal/identity"
)

// TestEveryCodeHasItsStatus: each code of the closed set has the status
// both edges answer with.
func TestEveryCodeHasItsStatus(t *testing.T) {
	for code, want := range map[identity.Code]int{
		identity.Invalid: 400, identity.NotFound: 404, identity.Conflict: 409, identity.Forbidden: 403,
		identity.Unauthorized: 401, identity.Gone: 410, identity.TooLarge: 413, identity.Unsupported: 415,
		identity.Unavailable: 503, identity.Internal: 500, identity.Code("no-such-code"): 500,
	} {
		if got := Status(code); got != want {
			t.Errorf("Status(%s) = %d, want %d", code, got, want)
		}
	}
}

// TestReadJSON: over real HTTP, a body is judged in order (media type
// before any byte is read, then size, then jsonin's check), each refusal
// with its code.
func TestReadJSON(t *testing.T) {
	const limit = 64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		LimitBody(w, r, limit)
		data, err := ReadJSON(r)
		if err != nil {
			JSON{ContentType: "application/json"}.Write(w, Status(identity.ErrorCode(err)), map[string]string{"code": string(identity.ErrorCode(err)), "message": identity.ErrorMessage(err)})
			return
		}
		JSON{ContentType: "application/x+json", Indent: "  "}.Write(w, http.StatusOK, map[string]int{"read": len(data)})
	}))
	defer srv.Close()
	big := `{"a": "` + strings.Repeat("x", limit) + `"}`
	for _, c := range []struct {
		name, ct, body string
		status         int
		out, ctOut     string
	}{
		{"JSON", "application/json", `{"a": 1}`, 200, "{\n  \"read\": 8\n}\n", "application/x+json"},
		{"SCIM's media type", "application/scim+json; charset=utf-8", `{"a": 1}`, 200, "{\n  \"read\": 8\n}\n", "application/x+json"},
		{"not JSON, and too large: the media type first", "text/plain", big, 415, "", "application/json"},
		{"too large", "application/json", big, 413, `{"code":"too_large","message":"body is larger than 64 bytes"}` + "\n", "application/json"},
		{"a key twice", "application/json", `{"a": 1, "A": 2}`, 400, "", "application/json"},
		{"a NUL", "application/json", `{"a": "\u0000"}`, 400, "", "application/json"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL, c.ct, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != c.ctOut {
				t.Fatalf("%d %s %s, want %d %s", resp.StatusCode, resp.Header.Get("Content-Type"), data, c.status, c.ctOut)
			}
			if c.out != "" && string(data) != c.out {
				t.Fatalf("body %q, want %q", data, c.out)
			}
		})
	}
}

func TestBearerToken(t *testing.T) {
	for h, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "Bearer": "", "": ""} {
		r := httptest.NewRequest("GET", "/", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		got, ok := BearerToken(r)
		if got != want || ok != (want != "") {
			t.Errorf("BearerToken(%q) = %q, %v, want %q", h, got, ok, want)
		}
	}
}
