package service

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/platform/platform/internal/msgpackscan"
)

// Codec names a wire encoding for request and response bodies.
type Codec int

// The codecs every endpoint understands. JSON is the default, so requests
// typed by hand with the NATS CLI work.
const (
	JSON Codec = iota
	Msgpack
)

// Content types.
const (
	ContentTypeJSON    = "application/json"
	ContentTypeMsgpack = "application/msgpack"
	ContentTypeHeader  = "Content-Type"
)

// String returns the codec's content type.
func (c Codec) String() string {
	if c == Msgpack {
		return ContentTypeMsgpack
	}
	return ContentTypeJSON
}

// CodecFor picks the codec named by a Content-Type header value: empty and
// JSON types give JSON, the msgpack types give Msgpack, anything else is an
// unsupported_media_type error.
func CodecFor(contentType string) (Codec, error) {
	if contentType == "" {
		return JSON, nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return JSON, Errorf(CodeUnsupportedMedia, "bad Content-Type %q: %v", contentType, err)
	}
	switch strings.ToLower(mt) {
	case "application/json", "text/json", "text/plain":
		return JSON, nil
	case "application/msgpack", "application/x-msgpack", "application/vnd.msgpack":
		return Msgpack, nil
	}
	return JSON, Errorf(CodeUnsupportedMedia, "unsupported Content-Type %q: use application/json or application/msgpack", contentType)
}

// CodecOf returns the codec a message's Content-Type header asks for.
func CodecOf(h nats.Header) (Codec, error) {
	return CodecFor(h.Get(ContentTypeHeader))
}

// Decode decodes data into v strictly: unknown fields and trailing data are
// errors. Msgpack uses the same `json` struct tags as JSON. Every failure
// is a bad_request *Error whose message says what was wrong.
func (c Codec) Decode(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return Errorf(CodeBadRequest, "empty request body: send a %s document", c)
	}
	switch c {
	case Msgpack:
		// The msgpack decoder allocates whatever length the body
		// announces; Check refuses a length beyond the bytes present
		// before the decoder sees one.
		if err := checkMsgpack(data, v); err != nil {
			return err
		}
		dec := msgpack.NewDecoder(bytes.NewReader(data))
		dec.SetCustomStructTag("json")
		dec.DisallowUnknownFields(true)
		if err := decodeMsgpack(dec, v); err != nil {
			return Errorf(CodeBadRequest, "invalid msgpack body: %v", err)
		}
		return nil
	default:
		if err := checkJSON(data, v); err != nil {
			return err
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return Errorf(CodeBadRequest, "invalid JSON body: %v", err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return Errorf(CodeBadRequest, "invalid JSON body: unexpected data after the document")
		}
		return nil
	}
}

// Encode encodes v in the codec.
func (c Codec) Encode(v any) ([]byte, error) {
	switch c {
	case Msgpack:
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.SetCustomStructTag("json")
		enc.SetOmitEmpty(false)
		if err := enc.Encode(v); err != nil {
			return nil, fmt.Errorf("encode msgpack: %w", err)
		}
		return buf.Bytes(), nil
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode json: %w", err)
		}
		return b, nil
	}
}

// DecodeLenient decodes data into v leniently: unknown fields are ignored,
// for documents that may grow fields (heartbeats, records written by newer
// versions). Lengths and nesting are checked as Decode checks them, and
// trailing data is an error. Failures are bad_request *Errors.
func (c Codec) DecodeLenient(data []byte, v any) error {
	if c != Msgpack {
		if err := checkJSON(data, v); err != nil {
			return err
		}
		if err := json.Unmarshal(data, v); err != nil {
			return Errorf(CodeBadRequest, "invalid JSON body: %v", err)
		}
		return nil
	}
	if err := checkMsgpack(data, v); err != nil {
		return err
	}
	if err := decodeChecked(data, v); err != nil {
		return Errorf(CodeBadRequest, "invalid msgpack body: %v", err)
	}
	return nil
}

// checkMsgpack refuses a msgpack body that announces lengths beyond its
// bytes, nests too deeply, or would cost more than MaxDecodeBytes decoded
// into v.
func checkMsgpack(data []byte, v any) error {
	counts, err := msgpackscan.Scan(data)
	if err != nil {
		return Errorf(CodeBadRequest, "invalid msgpack body: %v", err)
	}
	return checkBudget(v, len(data), func() (int, int) { return counts.Elements, counts.Entries })
}

// checkJSON refuses a JSON body that would cost more than MaxDecodeBytes
// decoded into v.
func checkJSON(data []byte, v any) error {
	return checkBudget(v, len(data), func() (int, int) { return countJSON(data) })
}

func decodeLoose(data []byte, v any) error {
	if err := msgpackscan.Check(data); err != nil {
		return err
	}
	return decodeChecked(data, v)
}

// decodeChecked decodes msgpack that passed msgpackscan, leniently.
func decodeChecked(data []byte, v any) error {
	dec := msgpack.NewDecoder(bytes.NewReader(data))
	dec.SetCustomStructTag("json")
	return decodeMsgpack(dec, v)
}

// decodeMsgpack runs dec, turning a panic of the decoder into an error:
// msgpack v5.4.1 panics (reflect: IsNil on a struct) on a nil where a
// struct with a decoder of its own is expected, such as a time.Time
// field, and a body is not allowed to panic whoever decodes it.
func decodeMsgpack(dec *msgpack.Decoder, v any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("msgpack decoder: %v", p)
		}
	}()
	return dec.Decode(v)
}
