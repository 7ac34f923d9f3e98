package httpapi

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/signature"
)

// TestInputHygiene: one set of rules at every edge and on both backends:
// NUL, invalid UTF-8 and keys given twice are refused with 400 naming the
// field; a body that is not sent as JSON is 415; nothing is stored.
func TestInputHygiene(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			a := newAPI(t, backend)
			raw := func(body []byte, ct string) (int, ErrorBody) {
				req, _ := http.NewRequest("POST", a.url+"/v1/events", bytes.NewReader(body))
				if ct != "" {
					req.Header.Set("Content-Type", ct)
				}
				req.Header.Set("Authorization", "Bearer "+a.tokens["admin"])
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				data, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, a.errorOf(data)
			}
			ev := func(display string) []byte {
				return []byte(`{"source":"hr","id":"x1","type":"joiner","externalId":"hy","kind":"human","displayName":"` + display + `"}`)
			}
			for _, tc := range []struct {
				name  string
				body  []byte
				ct    string
				code  int
				field string
			}{
				{"NUL escape", ev(`a\u0000b`), "application/json", 400, "displayName"},
				{"NUL in an attribute", []byte(`{"source":"hr","id":"x1","type":"joiner","externalId":"hy","kind":"human","attributes":{"team":"a\u0000"}}`), "application/json", 400, "attributes.team"},
				{"invalid UTF-8", ev("caf\xe9"), "application/json", 400, "displayName"},
				{"invalid UTF-8 in externalId", []byte("{\"source\":\"hr\",\"id\":\"x1\",\"type\":\"joiner\",\"externalId\":\"h\xffy\",\"kind\":\"human\"}"), "application/json", 400, "externalId"},
				{"invalid UTF-8 in a list item", []byte("{\"source\":\"hr\",\"id\":\"x1\",\"type\":\"joiner\",\"externalId\":\"hy\",\"kind\":\"human\",\"attributes\":{\"tools\":[\"a\",\"\xc3(\"]}}"), "application/json", 400, "attributes.tools[1]"},
				{"lone surrogate", ev(`\ud800`), "application/json", 400, "displayName"},
				{"key twice", []byte(`{"source":"hr","id":"x1","type":"joiner","externalId":"hy","externalId":"other","kind":"human"}`), "application/json", 400, "externalId"},
				{"key twice in another case", []byte(`{"source":"hr","id":"x1","type":"joiner","TYPE":"leaver","externalId":"hy","kind":"human"}`), "application/json", 400, "TYPE"},
				{"text/plain", ev("ok"), "text/plain", 415, ""},
				{"no content type", ev("ok"), "", 415, ""},
				{"form", ev("ok"), "application/x-www-form-urlencoded", 415, ""},
			} {
				code, e := raw(tc.body, tc.ct)
				if code != tc.code || e.Error.Field != tc.field {
					t.Errorf("%s: %d %+v, want %d naming %q", tc.name, code, e.Error, tc.code, tc.field)
				}
			}
			var list IdentityList
			a.do("GET", "/v1/identities?source=hr", "auditor", nil, 200, &list)
			if len(list.Items) != 0 {
				t.Fatalf("refused bodies stored identities: %+v", list.Items)
			}
			// The same body as JSON is accepted, with a real U+FFFD kept.
			if code, e := raw(ev("ok \ufffd"), "application/json; charset=utf-8"); code != 202 {
				t.Fatalf("a clean body: %d %+v", code, e)
			}
			// A webhook's body obeys the same rules, after its signature.
			body := `{"action": "joiner", "delivery": "d-1", "delivery": "d-2", "pipeline": "p", "owner": "hy"}`
			req, _ := http.NewRequest("POST", a.url+"/v1/sources/ci/webhook", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			signature.SetHeaders(req.Header, []byte(ciSecret), []byte(body), time.Now())
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if e := a.errorOf(data); resp.StatusCode != 400 || e.Error.Field != "delivery" {
				t.Fatalf("webhook with a key twice: %d %s", resp.StatusCode, data)
			}
		})
	}
}
