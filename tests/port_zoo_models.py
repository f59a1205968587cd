"""Model-zoo factories that tests/test_port_zoo.py and `ganparity bench zoo --models gluoncv` port
(by path: 'tests/port_zoo_models.py:NAME'), at small widths so a CPU proves them in seconds:
GluonNLP's BERT and Transformer encoder, GluonCV's detector and segmenter classes on small
backbones where the zoo's names only come at full width. Nothing is downloaded (pretrained=False,
pretrained_base=False; a vocabulary of the test's own)."""

from mxnet.gluon import nn

VOCAB = 60


def bert_small():
    """GluonNLP's BERTModel, 2 layers of width 32, 2 heads, with pooler: (token ids, token types,
    valid length) -> (sequence output, pooled output)."""
    import gluonnlp as nlp

    encoder = nlp.model.BERTEncoder(num_layers=2, units=32, hidden_size=64, max_length=16, num_heads=2,
                                    dropout=0.1, output_attention=False, output_all_encodings=False)
    return nlp.model.BERTModel(encoder, vocab_size=VOCAB, token_type_vocab_size=2, units=32, embed_size=32,
                               use_pooler=True, use_decoder=False, use_classifier=False)


class TransformerEncoderNet(nn.HybridBlock):
    """GluonNLP's TransformerEncoder (sinusoidal positions, 2 layers of width 32, 4 heads) over an
    embedding: (token ids, valid length) -> the encoded sequence."""

    def __init__(self, units=32, **kwargs):
        import gluonnlp as nlp

        super().__init__(**kwargs)
        with self.name_scope():
            self.embed = nn.Embedding(VOCAB, units)
            self.encoder = nlp.model.transformer.TransformerEncoder(num_layers=2, units=units, hidden_size=64,
                                                                    max_length=16, num_heads=4, dropout=0.1)

    def hybrid_forward(self, F, tokens, valid_length):
        out, _ = self.encoder(self.embed(tokens), None, valid_length)
        return out


def transformer_encoder_small():
    return TransformerEncoderNet()


def _gluoncv():
    from ganparity.backends.mxnet.port import _import_gluoncv

    return _import_gluoncv()  # gluoncv refuses to import beside torch >= 2 otherwise


def fcn_small():
    """GluonCV's FCN (dilated ResNet-50 backbone, 4 classes, its auxiliary head): segmentation."""
    _gluoncv()
    from gluoncv.model_zoo.fcn import FCN

    return FCN(4, backbone="resnet50", pretrained_base=False, aux=True)


def fastscnn_small():
    """GluonCV's Fast-SCNN (its learning-to-downsample, global feature extractor with pyramid
    pooling, feature fusion and classifier; 4 classes, its auxiliary head) for 64x64 images."""
    _gluoncv()
    from gluoncv.model_zoo.fastscnn import FastSCNN

    return FastSCNN(4, aux=True, height=64, width=64, crop_size=64, base_size=64)


def yolo3_small():
    """GluonCV's YOLOV3 (its detection blocks, output layers with anchors and offsets, box decoding,
    NMS and top-k) on a three-stage backbone of width 8-16 (strides 8, 16, 32), 2 classes:
    image -> (class ids, scores, boxes)."""
    _gluoncv()
    from gluoncv.model_zoo.yolo.yolo3 import YOLOV3

    def stage(channels, downs):
        s = nn.HybridSequential(prefix="")
        for _ in range(downs):
            s.add(nn.Conv2D(channels, 3, strides=2, padding=1, use_bias=False), nn.BatchNorm(), nn.LeakyReLU(0.1))
        return s

    anchors = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
    return YOLOV3([stage(8, 3), stage(16, 1), stage(16, 1)], [16, 8, 8], anchors, [8, 16, 32], ["cat", "dog"],
                  alloc_size=(16, 16), nms_topk=40, post_nms=10)
