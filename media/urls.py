from django.urls import path

from media import views

urlpatterns = [
    path("v4/attachments/form/upload", views.UploadFormView.as_view()),
]
