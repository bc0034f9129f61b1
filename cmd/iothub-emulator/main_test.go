package main

import (
	"io"
	"testing"
)

func TestParseFlags_EnvironmentThenFlags(t *testing.T) {
	t.Setenv("IOTHUB_EMULATOR_HTTPS_PORT", "8443")
	t.Setenv("IOTHUB_EMULATOR_MQTT_PORT", "0")
	t.Setenv("IOTHUB_EMULATOR_TLS_SAN", "a.example,b.example")
	o, err := parseFlags([]string{"--https-port", "9443", "--hostname", "hub.local"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.httpsPort != 9443 {
		t.Errorf("flag should win over env: https port %d", o.httpsPort)
	}
	if o.mqttPort != 0 || o.mqttsPort != 8883 {
		t.Errorf("env not applied: mqtt %d mqtts %d", o.mqttPort, o.mqttsPort)
	}
	if len(o.tlsSANs) != 2 || o.tlsSANs[1] != "b.example" {
		t.Errorf("tls sans %v", o.tlsSANs)
	}
	cfg := o.config(nil)
	if cfg.MQTTAddr != "" || cfg.HTTPSAddr != "127.0.0.1:9443" || cfg.Hostname != "hub.local" {
		t.Errorf("config %+v", cfg)
	}
	t.Setenv("IOTHUB_EMULATOR_HTTP_PORT", "eighty")
	if _, err := parseFlags(nil, io.Discard); err == nil {
		t.Error("a bad env value was accepted")
	}
}

func TestProgressBar(t *testing.T) {
	for _, tc := range []struct {
		j    jobView
		want string
	}{
		{jobView{Status: "running"}, "[..........]   0% 0/0"},
		{jobView{Status: "completed"}, "[##########] 100% 0/0"},
		{func() jobView {
			j := jobView{Status: "running"}
			j.Stats.DeviceCount, j.Stats.SucceededCount, j.Stats.FailedCount, j.Stats.RunningCount = 10, 4, 1, 2
			return j
		}(), "[#####.....]  50% 5/10 (1 failed) 2 running"},
	} {
		if got := progressBar(&tc.j, 10); got != tc.want {
			t.Errorf("progressBar = %q, want %q", got, tc.want)
		}
	}
}

// --sku brings the tier's limit of concurrent jobs, unless
// --max-active-jobs (or its variable) says otherwise.
func TestParseFlags_TierJobLimit(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		want int
	}{
		{nil, "", 10},
		{[]string{"--sku", "S1"}, "", 1},
		{[]string{"--sku", "S2"}, "", 5},
		{[]string{"--sku", "S1", "--max-active-jobs", "3"}, "", 3},
		{[]string{"--sku", "S1"}, "0", 0},
	} {
		if tc.env != "" {
			t.Setenv("IOTHUB_EMULATOR_MAX_ACTIVE_JOBS", tc.env)
		}
		o, err := parseFlags(tc.args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if o.maxActiveJobs != tc.want {
			t.Errorf("%v (env %q): max active jobs %d, want %d", tc.args, tc.env, o.maxActiveJobs, tc.want)
		}
	}
}
