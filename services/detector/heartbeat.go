package detector

import (
	"time"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/service"
	"github.com/platform/platform/services/detector/accrual"
)

// Ingest decodes one heartbeat message received at now (time since tab's
// epoch) with service.ParseHeartbeat and records it in tab. A bad
// heartbeat is not recorded; its error is a *service.HeartbeatError whose
// Reason says why.
func Ingest(tab *accrual.Table, subject string, h nats.Header, data []byte, now time.Duration) error {
	hb, err := service.ParseHeartbeat(subject, h, data)
	if err != nil {
		return err
	}
	tab.Heartbeat(hb.Service, hb.Instance, accrual.Load(hb.Load), now)
	return nil
}
