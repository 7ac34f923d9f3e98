package testsvc

import "testing"

func TestStartSlapd(t *testing.T) {
	s, err := StartSlapd()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	t.Log(s.URL)
}

func TestStartPostgres(t *testing.T) {
	s, err := StartPostgres()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	t.Log(s.URL)
}
