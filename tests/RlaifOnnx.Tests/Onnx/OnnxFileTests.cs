using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using DataType = Onnx.TensorProto.Types.DataType;
using RlaifOnnx.Core;
using RlaifOnnx.Onnx;

namespace RlaifOnnx.Tests.Onnx;

public class OnnxFileTests
{
    [Fact]
    public void BuiltGraphWithExternalDataRoundTripsAndRuns()
    {
        using var dir = new TempDir();
        var g = new GraphBuilder("affine");
        var x = g.Input("x", DataType.Float, "batch", 300);
        var weights = Enumerable.Range(0, 300 * 2).Select(i => (float)(i % 7) / 7f).ToArray();
        var w = g.Initializer(OnnxFile.FloatTensorView("w", weights, 300, 2));
        g.OutputAs(g.Add(g.MatMul(x, w), g.Scalar(1.5)), "y", DataType.Float, "batch", 2);
        var path = Path.Combine(dir.Path, "m.onnx");
        var model = g.ToModel();
        OnnxFile.Save(model, path, "m.onnx.data");
        // Save does not copy the model, and leaves it as it was: the weight is still in memory, not external.
        var inMemory = model.Graph.Initializer.Single(t => t.Name == "w");
        Assert.Equal(global::Onnx.TensorProto.Types.DataLocation.Default, inMemory.DataLocation);
        Assert.Empty(inMemory.ExternalData);
        Assert.Equal(weights, OnnxFile.ToFloats(inMemory));

        Assert.True(new FileInfo(Path.Combine(dir.Path, "m.onnx.data")).Length >= 300 * 2 * 4);
        var reloaded = OnnxFile.Load(path);
        Assert.Equal(weights, OnnxFile.ToFloats(reloaded.Graph.Initializer.Single(t => t.Name == "w")));

        using var session = new InferenceSession(path);
        var input = new DenseTensor<float>(Enumerable.Repeat(1f, 300).ToArray(), [1, 300]);
        using var results = session.Run([NamedOnnxValue.CreateFromTensor("x", input)]);
        var y = results.Single().AsEnumerable<float>().ToArray();
        Assert.Equal(weights.Where((_, i) => i % 2 == 0).Sum() + 1.5f, y[0], 3);
    }

    [Fact]
    public void ExternalDataOutsideTheFolderIsRefused()
    {
        using var dir = new TempDir();
        var g = new GraphBuilder("escape");
        var x = g.Input("x", DataType.Float, 300);
        var w = g.Initializer(OnnxFile.FloatTensor("w", new float[300], 300));
        g.OutputAs(g.Add(x, w), "y", DataType.Float, 300);
        var path = Path.Combine(dir.Path, "m.onnx");
        OnnxFile.Save(g.ToModel(), path, "m.onnx.data");
        var model = OnnxFile.Load(path, loadExternalData: false);
        var entry = model.Graph.Initializer[0].ExternalData.Single(e => e.Key == "location");
        entry.Value = "../secret.bin";
        using (var s = File.Create(path)) Google.Protobuf.MessageExtensions.WriteTo(model, s);

        var error = Assert.Throws<UserError>(() => OnnxFile.Load(path));
        Assert.Contains("escapes the model folder", error.Message);
        Assert.Contains("m.onnx", error.Message);
    }

    [Fact]
    public void ExternalDataReachedThroughASymlinkedFolderIsRefused()
    {
        using var dir = new TempDir();
        var model = Path.Combine(dir.Path, "model");
        var elsewhere = Path.Combine(dir.Path, "elsewhere");
        Directory.CreateDirectory(model);
        Directory.CreateDirectory(elsewhere);
        var g = new GraphBuilder("linked");
        var x = g.Input("x", DataType.Float, 300);
        var w = g.Initializer(OnnxFile.FloatTensor("w", new float[300], 300));
        g.OutputAs(g.Add(x, w), "y", DataType.Float, 300);
        // The weights are written outside, then reached as weights/m.onnx.data through a linked folder.
        var path = Path.Combine(model, "m.onnx");
        OnnxFile.Save(g.ToModel(), path, "m.onnx.data");
        File.Move(Path.Combine(model, "m.onnx.data"), Path.Combine(elsewhere, "m.onnx.data"));
        Directory.CreateSymbolicLink(Path.Combine(model, "weights"), elsewhere);
        var proto = OnnxFile.Load(path, loadExternalData: false);
        proto.Graph.Initializer[0].ExternalData.Single(e => e.Key == "location").Value = "weights/m.onnx.data";
        using (var s = File.Create(path)) Google.Protobuf.MessageExtensions.WriteTo(proto, s);

        var error = Assert.Throws<UserError>(() => OnnxFile.Load(path));
        Assert.Contains("links outside the model folder", error.Message);

        // A folder that is itself reached through a link stays usable: both sides are compared as real paths.
        var linkedModel = Path.Combine(dir.Path, "linked-model");
        Directory.CreateSymbolicLink(linkedModel, model);
        Directory.Delete(Path.Combine(model, "weights"));
        File.Move(Path.Combine(elsewhere, "m.onnx.data"), Path.Combine(model, "m.onnx.data"));
        proto.Graph.Initializer[0].ExternalData.Single(e => e.Key == "location").Value = "m.onnx.data";
        using (var s = File.Create(path)) Google.Protobuf.MessageExtensions.WriteTo(proto, s);
        Assert.Single(OnnxFile.Load(Path.Combine(linkedModel, "m.onnx")).Graph.Initializer);
    }

    [Fact]
    public void CorruptFileIsAUserError()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "bad.onnx");
        File.WriteAllBytes(path, [0xff, 0xff, 0xff, 0x01, 0x02]);
        var error = Assert.Throws<UserError>(() => OnnxFile.Load(path));
        Assert.StartsWith(path, error.Message);
    }
}
